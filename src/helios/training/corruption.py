"""Frame-Aware Corrupt, saturation augmentation and random history drop (paper §3.2.3; official §3.3–3.4).

Every random number comes from an explicit generator, so a training step is a pure function of
(seed, step) and a resumed run repeats the same corruption.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import CorruptionSettings, HistoryDropSettings

MODES = ("clean", "noise", "exposure", "downsample")


def _uniform(low: float, high: float, shape, generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def choose_modes(frames: int, settings: CorruptionSettings, generator: torch.Generator) -> list[str]:
    """One mode per frame, drawn independently: noise / exposure / downsample / clean."""
    u = torch.rand(frames, generator=generator)
    edges = torch.tensor([settings.noise_prob, settings.exposure_prob, settings.downsample_prob]).cumsum(0)
    return [MODES[1 + int((value >= edges).sum())] if value < edges[-1] else "clean" for value in u]


def corrupt_frames(
    frames: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator
) -> tuple[torch.Tensor, list[str]]:
    """Corrupt each frame of (C, T, h, w) by its own mode and strength."""
    modes = choose_modes(frames.shape[1], settings, generator)
    out = frames.clone()
    for t, mode in enumerate(modes):
        x = frames[:, t]
        if mode == "noise":
            sigma = float(_uniform(*settings.noise_sigma, (1,), generator))
            out[:, t] = sigma * torch.randn(x.shape, generator=generator) + (1 - sigma) * x
        elif mode == "exposure":
            out[:, t] = x * float(_uniform(*settings.exposure_range, (1,), generator))
        elif mode == "downsample":
            factor = float(_uniform(*settings.downsample_range, (1,), generator))
            size = (max(1, round(x.shape[-2] * factor)), max(1, round(x.shape[-1] * factor)))
            small = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)
            out[:, t] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    return out, modes


def saturate(frames: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator) -> torch.Tensor:
    """Scale deviations from the per-position channel mean by a factor in U[lo, 1) or U(1, hi] (50/50)."""
    low, high = settings.saturation_range
    factor = (
        float(_uniform(low, 1.0, (1,), generator))
        if torch.rand(1, generator=generator) < 0.5
        else float(_uniform(1.0, high, (1,), generator))
    )
    mean = frames.mean(dim=0, keepdim=True)
    return mean + (frames - mean) * factor


def corrupt_history(
    history: torch.Tensor, anchor: torch.Tensor, settings: CorruptionSettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample of (B, C, T, h, w): with ``clean_prob`` untouched, else Frame-Aware Corrupt per frame
    (anchor separately), then optional saturation of the history (anchor excluded)."""
    history, anchor = history.clone(), anchor.clone()
    for b in range(history.shape[0]):
        if torch.rand(1, generator=generator) < settings.clean_prob:
            continue
        history[b], _ = corrupt_frames(history[b], settings, generator)
        anchor[b], _ = corrupt_frames(anchor[b], settings, generator)
        if torch.rand(1, generator=generator) < settings.saturation_prob:
            history[b] = saturate(history[b], settings, generator)
    return history, anchor


def drop_history(
    history: torch.Tensor, anchor: torch.Tensor, settings: HistoryDropSettings, chunk: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per sample: T2V (no history, no anchor) w.p. t2v; else I2V-like (anchor + newest frame) w.p. i2v;
    else V2V-like (the oldest 1 + r·chunk frames zeroed) w.p. v2v; else the full window."""
    history, anchor = history.clone(), anchor.clone()
    kinds = []
    frames = history.shape[2]
    tail = frames % chunk
    for b in range(history.shape[0]):
        u = torch.rand(3, generator=generator)
        if u[0] < settings.t2v:
            history[b] = 0
            anchor[b] = 0
            kinds.append("t2v")
        elif u[1] < settings.i2v:
            history[b, :, :-1] = 0
            kinds.append("i2v")
        elif u[2] < settings.v2v:
            r = int(torch.randint(0, frames // chunk + 1, (1,), generator=generator))
            history[b, :, : min(frames, tail + r * chunk)] = 0
            kinds.append("v2v")
        else:
            kinds.append("full")
    return history, anchor, kinds
