"""The rolling history window: what the transformer sees of the past (paper §3.1–3.3).

A buffer of clean latent frames (zeros at first) grows by one chunk at a time; each chunk reads
the newest ``sum(sizes)`` frames, split into long / mid / newest parts, plus the First-Frame
Anchor (paper §3.2.2). The frame indices given to RoPE are window-relative and the same for every
chunk: anchor 0, long 1–16, mid 17–18, newest 19, noisy 20–28.
"""

from __future__ import annotations

import torch

from ..config import HistorySettings
from ..encoders.protocols import VideoCodec, held_image_latent
from ..model.window import HistoryInputs, window_frames, window_history
from ..sampling.noise import NoiseDraws


class HistoryWindow:
    """The rolling buffer of clean latents of one generation, with its anchor."""

    def __init__(self, settings: HistorySettings, batch: int, channels: int, height: int, width: int, device):
        self.settings = settings
        self.length = window_frames(settings)
        self.buffer = torch.zeros(batch, channels, self.length, height, width, device=device, dtype=torch.float32)
        self.anchor: torch.Tensor | None = None  # (B, C, 1, H, W)

    def history_inputs(self, dtype: torch.dtype) -> HistoryInputs:
        return window_history(self.buffer, self.anchor, self.settings, dtype)

    def append(self, latents: torch.Tensor) -> None:
        self.buffer = torch.cat([self.buffer, latents], dim=2)

    def replace_newest(self, latents: torch.Tensor) -> None:
        """Swap the newest frames of the buffer (history-only edits such as adaptive corruption)."""
        self.buffer = torch.cat([self.buffer[:, :, : -latents.shape[2]], latents.to(self.buffer.dtype)], dim=2)

    def trim(self) -> None:
        """Drop what no later chunk can read, so memory stays bounded for videos of any length."""
        self.buffer = self.buffer[:, :, -self.length :]


def noised(latents: torch.Tensor, sigma_range: tuple[float, float], draw: NoiseDraws, per_frame: bool) -> torch.Tensor:
    """σ·ε + (1 − σ)·x with σ ~ U[σ_min, σ_max], one σ per frame or one for all (released order: σ, then ε)."""
    low, high = sigma_range
    frames = latents.shape[2] if per_frame else 1
    sigma = draw.uniform(frames) * (high - low) + low
    if per_frame:
        sigma = sigma.view(1, 1, frames, 1, 1)
    return sigma * draw.normal(tuple(latents.shape)) + (1 - sigma) * latents


def encode_to(window: HistoryWindow, codec: VideoCodec, pixels: torch.Tensor, draw: NoiseDraws) -> torch.Tensor:
    """Latents of ``pixels`` on the window's device: with the codec on a second device (pipelined
    inference) they cross over before the noise, which is drawn on the transformer's device, meets them."""
    return codec.encode(pixels, draw.generator).to(window.buffer.device)


def condition_on_image(window: HistoryWindow, codec: VideoCodec, pixels: torch.Tensor, draw: NoiseDraws) -> None:
    """I2V (official §2.2): the image is the anchor; the last latent of the image repeated for one
    chunk fills the newest history slot. Both are lightly noised so the model is not frozen."""
    settings = window.settings
    image = pixels[:, :, :1]
    chunk_frames = settings.chunk_video_frames(codec.temporal_factor)
    anchor = encode_to(window, codec, image, draw)
    fake = held_image_latent(codec, image, chunk_frames, draw.generator).to(window.buffer.device)
    anchor = noised(anchor, settings.image_noise_sigma, draw, per_frame=False)
    fake = noised(fake, settings.video_noise_sigma, draw, per_frame=False)
    batch = window.buffer.shape[0]  # (a batch of videos starts from the same image)
    window.buffer = torch.cat([window.buffer[:, :, :-1], fake.expand(batch, -1, -1, -1, -1)], dim=2)
    window.anchor = anchor.expand(batch, -1, -1, -1, -1)


def condition_on_video(window: HistoryWindow, codec: VideoCodec, pixels: torch.Tensor, draw: NoiseDraws) -> None:
    """V2V (official §2.2): the newest whole chunks of the video, each encoded on its own as in
    training, become the history; its first frame is the anchor; every latent frame gets its own σ."""
    settings = window.settings
    chunk_frames = settings.chunk_video_frames(codec.temporal_factor)
    total = pixels.shape[2]
    chunks = total // chunk_frames
    if chunks == 0:
        raise ValueError(f"the input video has {total} frames; video-to-video needs at least {chunk_frames}")
    start = total - chunks * chunk_frames
    anchor = encode_to(window, codec, pixels[:, :, :1], draw)
    latents = torch.cat(
        [
            encode_to(window, codec, pixels[:, :, start + i * chunk_frames : start + (i + 1) * chunk_frames], draw)
            for i in range(chunks)
        ],
        dim=2,
    )
    anchor = noised(anchor, settings.image_noise_sigma, draw, per_frame=False)
    per_chunk = latents.split(settings.chunk_latent_frames, dim=2)
    latents = torch.cat([noised(c, settings.video_noise_sigma, draw, per_frame=True) for c in per_chunk], dim=2)
    batch = window.buffer.shape[0]  # (a batch of videos continues the same video)
    latents = latents.expand(batch, -1, -1, -1, -1)
    anchor = anchor.expand(batch, -1, -1, -1, -1)
    if latents.shape[2] < window.buffer.shape[2]:
        keep = window.buffer.shape[2] - latents.shape[2]
        window.buffer = torch.cat([window.buffer[:, :, :keep], latents], dim=2)
    else:
        window.buffer = latents
    window.anchor = anchor
