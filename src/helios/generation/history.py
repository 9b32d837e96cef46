"""The rolling history window: what the transformer sees of the past (paper §3.1–3.3).

A buffer of clean latent frames (zeros at first) grows by one chunk at a time; each chunk reads
the newest ``sum(sizes)`` frames, split into long / mid / newest parts, plus the First-Frame
Anchor (paper §3.2.2). The frame indices given to RoPE are window-relative and the same for every
chunk: anchor 0, long 1–16, mid 17–18, newest 19, noisy 20–28.
"""

from __future__ import annotations

import torch

from ..config import HistorySettings
from ..devices import to_device
from ..encoders.protocols import VideoCodec


def window_split(settings: HistorySettings) -> tuple[int, int, int]:
    """Frames of the long, mid and short-newest parts of the window."""
    long, mid, newest = settings.sizes
    # Without an anchor the short part holds the two newest frames.
    return (long, mid, newest if settings.keep_first_frame else newest + 1)


def window_indices(settings: HistorySettings) -> dict[str, torch.Tensor]:
    """The fixed, window-relative RoPE frame indices (paper §3.2.1), as (1, n) rows."""
    chunk = settings.chunk_latent_frames
    long, mid, newest = window_split(settings)
    total = long + mid + newest
    if settings.keep_first_frame:
        prefix, long_i, mid_i, newest_i, current = torch.arange(1 + total + chunk).split([1, long, mid, newest, chunk])
        short = torch.cat([prefix, newest_i])
    else:
        long_i, mid_i, short, current = torch.arange(total + chunk).split([long, mid, newest, chunk])
    return {
        "indices_hidden_states": current[None],
        "indices_latents_history_short": short[None],
        "indices_latents_history_mid": mid_i[None],
        "indices_latents_history_long": long_i[None],
    }


def history_kwargs(window: torch.Tensor, anchor: torch.Tensor | None, settings: HistorySettings,
                   dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The transformer's history keyword arguments from the newest window frames (B, C, ≥n, h, w)
    and the anchor (B, C, 1, h, w; None = zeros). Used by inference and training alike."""
    split = window_split(settings)
    long, mid, newest = window[:, :, -sum(split) :].split(split, dim=2)
    if settings.keep_first_frame:
        prefix = anchor if anchor is not None else torch.zeros_like(newest[:, :, :1])
        short = torch.cat([prefix.to(newest.dtype), newest], dim=2)
    else:
        short = newest
    return {
        **window_indices(settings),  # CPU tensors: the transformer caches their RoPE tables
        "latents_history_short": short.to(dtype),
        "latents_history_mid": mid.to(dtype),
        "latents_history_long": long.to(dtype),
    }


class HistoryWindow:
    """The rolling buffer of clean latents of one generation, with its anchor."""

    def __init__(self, settings: HistorySettings, batch: int, channels: int, height: int, width: int, device):
        self.settings = settings
        self.length = sum(window_split(settings))
        self.buffer = torch.zeros(batch, channels, self.length, height, width, device=device, dtype=torch.float32)
        self.anchor: torch.Tensor | None = None  # (B, C, 1, H, W)

    def transformer_inputs(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return history_kwargs(self.buffer, self.anchor, self.settings, dtype)

    def append(self, latents: torch.Tensor) -> None:
        self.buffer = torch.cat([self.buffer, latents], dim=2)

    def replace_newest(self, latents: torch.Tensor) -> None:
        """Swap the newest frames of the buffer (history-only edits such as adaptive corruption)."""
        self.buffer = torch.cat([self.buffer[:, :, : -latents.shape[2]], latents.to(self.buffer.dtype)], dim=2)

    def trim(self) -> None:
        """Drop what no later chunk can read, so memory stays bounded for videos of any length."""
        self.buffer = self.buffer[:, :, -self.length :]


def noised(latents: torch.Tensor, sigma_range: tuple[float, float], draw: "NoiseDraws", per_frame: bool) -> torch.Tensor:
    """σ·ε + (1 − σ)·x with σ ~ U[σ_min, σ_max], one σ per frame or one for all (released order: σ, then ε)."""
    low, high = sigma_range
    frames = latents.shape[2] if per_frame else 1
    sigma = draw.uniform(frames) * (high - low) + low
    if per_frame:
        sigma = sigma.view(1, 1, frames, 1, 1)
    return sigma * draw.normal(tuple(latents.shape)) + (1 - sigma) * latents


class NoiseDraws:
    """All random numbers of a generation, from one generator in the released order."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator = generator
        self.device = device

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return to_device(torch.randn(shape, generator=self.generator, device=self.generator.device), self.device)

    def uniform(self, count: int) -> torch.Tensor:
        return to_device(torch.rand(count, generator=self.generator, device=self.generator.device), self.device)


def condition_on_image(window: HistoryWindow, codec: VideoCodec, pixels: torch.Tensor, draw: NoiseDraws) -> None:
    """I2V (official §2.2): the image is the anchor; the last latent of the image repeated for one
    chunk fills the newest history slot. Both are lightly noised so the model is not frozen."""
    settings = window.settings
    image = pixels[:, :, :1]
    chunk_frames = (settings.chunk_latent_frames - 1) * codec.temporal_factor + 1
    anchor = codec.encode(image, draw.generator)
    fake = codec.encode(image.repeat(1, 1, chunk_frames, 1, 1), draw.generator)[:, :, -1:]
    anchor = noised(anchor, settings.image_noise_sigma, draw, per_frame=False)
    fake = noised(fake, settings.video_noise_sigma, draw, per_frame=False)
    window.buffer = torch.cat([window.buffer[:, :, :-1], fake.to(window.buffer.device)], dim=2)
    window.anchor = anchor


def condition_on_video(window: HistoryWindow, codec: VideoCodec, pixels: torch.Tensor, draw: NoiseDraws) -> None:
    """V2V (official §2.2): the newest whole chunks of the video, each encoded on its own as in
    training, become the history; its first frame is the anchor; every latent frame gets its own σ."""
    settings = window.settings
    chunk_frames = (settings.chunk_latent_frames - 1) * codec.temporal_factor + 1
    total = pixels.shape[2]
    chunks = total // chunk_frames
    if chunks == 0:
        raise ValueError(f"the input video has {total} frames; video-to-video needs at least {chunk_frames}")
    start = total - chunks * chunk_frames
    anchor = codec.encode(pixels[:, :, :1], draw.generator)
    latents = torch.cat(
        [
            codec.encode(pixels[:, :, start + i * chunk_frames : start + (i + 1) * chunk_frames], draw.generator)
            for i in range(chunks)
        ],
        dim=2,
    )
    anchor = noised(anchor, settings.image_noise_sigma, draw, per_frame=False)
    per_chunk = latents.split(settings.chunk_latent_frames, dim=2)
    latents = torch.cat([noised(c, settings.video_noise_sigma, draw, per_frame=True) for c in per_chunk], dim=2)
    latents = latents.to(window.buffer.device)
    if latents.shape[2] < window.buffer.shape[2]:
        keep = window.buffer.shape[2] - latents.shape[2]
        window.buffer = torch.cat([window.buffer[:, :, :keep], latents], dim=2)
    else:
        window.buffer = latents
    window.anchor = anchor
