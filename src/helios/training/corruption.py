"""Frame-Aware Corrupt, saturation augmentation and random history drop (paper §3.2.3; official §3.3–3.4).

Every random number comes from an explicit generator, so a training step is a pure function of
(seed, step) and a resumed run repeats the same corruption.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import CorruptionSettings, HistoryDropSettings
from ..sampling.noise import device_randn

MODES = ("clean", "noise", "exposure", "downsample")


def _uniform(low: float, high: float, shape, generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def choose_modes(frames: int, settings: CorruptionSettings, generator: torch.Generator) -> list[str]:
    """One mode per frame, drawn independently: noise / exposure / downsample / clean."""
    return [MODES[i] for i in _mode_indices(torch.rand(frames, generator=generator), settings).tolist()]


def _mode_indices(u: torch.Tensor, settings: CorruptionSettings) -> torch.Tensor:
    """Index into MODES of each uniform draw in ``u``."""
    edges = torch.tensor([settings.noise_prob, settings.exposure_prob, settings.downsample_prob]).cumsum(0)
    index = 1 + (u[..., None] >= edges).sum(-1)
    return torch.where(u < edges[-1], index, torch.zeros_like(index))


def _corrupt_batch(
    frames: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame of (B, C, T, h, w) corrupted by its own mode and strength, all drawn at once (the
    per-frame Python loop this replaces made data preparation, not the GPU, bound a training step)."""
    b, _, t, h, w = frames.shape
    modes = _mode_indices(torch.rand(b, t, generator=generator), settings)
    sigma = _uniform(*settings.noise_sigma, (b, t), generator)
    exposure = _uniform(*settings.exposure_range, (b, t), generator)
    factor = _uniform(*settings.downsample_range, (b, t), generator)
    noise = device_randn(frames.shape, frames.device, generator)

    def per_frame(values: torch.Tensor) -> torch.Tensor:  # (B, T) → broadcast over (B, C, T, h, w)
        return values.to(frames.device)[:, None, :, None, None]

    s = per_frame(sigma)
    out = torch.where(per_frame(modes == 1), s * noise + (1 - s) * frames, frames)
    out = torch.where(per_frame(modes == 2), frames * per_frame(exposure), out)
    # Downsampled frames are grouped by their reduced size, so each size is one interpolation call.
    sizes = torch.stack([(h * factor).round().clamp(min=1), (w * factor).round().clamp(min=1)], -1).long()
    picked = (modes == 3).nonzero().tolist()
    by_size: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, j in picked:
        by_size.setdefault(tuple(sizes[i, j].tolist()), []).append((i, j))
    for size, where in by_size.items():
        rows, cols = zip(*where)
        x = frames[list(rows), :, list(cols)]  # (n, C, h, w)
        small = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[list(rows), :, list(cols)] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out, modes


def _saturate_batch(
    frames: torch.Tensor, chosen: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator
) -> torch.Tensor:
    """(B, C, T, h, w): the ``chosen`` samples saturated, each by its own factor."""
    low, high = settings.saturation_range
    b = frames.shape[0]
    below = torch.rand(b, generator=generator) < 0.5
    factor = torch.where(below, _uniform(low, 1.0, (b,), generator), _uniform(1.0, high, (b,), generator))
    factor = torch.where(chosen, factor, torch.ones_like(factor)).view(-1, 1, 1, 1, 1).to(frames.device)
    mean = frames.mean(dim=1, keepdim=True)
    return mean + (frames - mean) * factor


def corrupt_history(
    history: torch.Tensor, anchor: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample of (B, C, T, h, w): with ``clean_prob`` untouched, else Frame-Aware Corrupt per frame
    (anchor separately), then optional saturation of the history (anchor excluded)."""
    b = history.shape[0]
    corrupted = torch.rand(b, generator=generator) >= settings.clean_prob
    new_history, _ = _corrupt_batch(history, settings, generator)
    new_anchor, _ = _corrupt_batch(anchor, settings, generator)
    saturated = corrupted & (torch.rand(b, generator=generator) < settings.saturation_prob)
    new_history = _saturate_batch(new_history, saturated, settings, generator)
    keep = (~corrupted).view(-1, 1, 1, 1, 1).to(history.device)
    return torch.where(keep, history, new_history), torch.where(keep, anchor, new_anchor)


def drop_history(
    history: torch.Tensor, anchor: torch.Tensor, settings: HistoryDropSettings, chunk: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per sample: T2V (no history, no anchor) w.p. t2v; else I2V-like (anchor + newest frame) w.p. i2v;
    else V2V-like (the oldest 1 + r·chunk frames zeroed) w.p. v2v; else the full window."""
    b, frames = history.shape[0], history.shape[2]
    tail = frames % chunk
    u = torch.rand(b, 3, generator=generator)
    r = torch.randint(0, frames // chunk + 1, (b,), generator=generator)
    t2v = u[:, 0] < settings.t2v
    i2v = ~t2v & (u[:, 1] < settings.i2v)
    v2v = ~t2v & ~i2v & (u[:, 2] < settings.v2v)
    # the history frames each sample keeps: built as a (B, T) mask here, applied once on the device
    position = torch.arange(frames)
    zeroed = (position[None] < (tail + r * chunk).clamp(max=frames)[:, None]) & v2v[:, None]
    zeroed |= (position[None] < frames - 1) & i2v[:, None]
    zeroed |= t2v[:, None]
    keep_history = (~zeroed).to(history.dtype).to(history.device)[:, None, :, None, None]
    keep_anchor = (~t2v).to(anchor.dtype).to(anchor.device).view(-1, 1, 1, 1, 1)
    kinds = ["t2v" if a else "i2v" if i else "v2v" if v else "full" for a, i, v in zip(t2v, i2v, v2v)]
    return history * keep_history, anchor * keep_anchor, kinds


def still_image_history(
    history: torch.Tensor,
    anchor: torch.Tensor,
    target: torch.Tensor,
    held: torch.Tensor,
    share: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``HistoryDropSettings.still_image``: each sample w.p. ``share`` gets I2V's history of a still image
    of its target chunk's first frame — the anchor is that frame's latent (each chunk is encoded on its
    own, so its latent 0 is the frame alone), the newest history frame the image held for a chunk
    (``held``, (B, C, 1, h, w)), every other frame zero."""
    chosen = (torch.rand(history.shape[0], generator=generator) < share).to(history.device).view(-1, 1, 1, 1, 1)
    still = torch.cat([torch.zeros_like(history[:, :, :-1]), held.to(history.dtype)], dim=2)
    return torch.where(chosen, still, history), torch.where(chosen, target[:, :, :1].to(anchor.dtype), anchor)
