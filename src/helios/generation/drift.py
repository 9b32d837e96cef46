"""Adaptive sampling (paper §3.5, eq. 17–19): watch latent statistics, corrupt drifting history.

After each chunk the per-channel mean μ and variance σ² of its latents are compared with their
EMA over earlier chunks; a chunk whose ‖μ − μ̄‖₂ and ‖σ² − σ̄²‖₂ both exceed their thresholds is
drifting. Its frames are then corrupted *in the history only* (Frame-Aware Corrupt, x ← s·ε +
(1 − s)·x per frame), so the next chunk leans less on them; the output keeps the clean frames.
Fixes to the official version: detection is against the EMA *before* it absorbs the current
chunk, and the corruption never reaches the output.

The released thresholds (0.15, 0.15) belong to the Wan VAE's latent space. Another codec has other
statistics, so :func:`calibrate` derives thresholds from a codec's own latents of clean video — the
largest deviation seen on clean sequences, times a margin — and a model folder stores them
(``drift.json``); ``adaptive=True`` then uses the model's own thresholds.

A gross drift of one statistic (``gross_factor`` × its threshold, set by calibration; 0 — the
released rule — turns it off) is flagged on its own: in a world of small objects on a plain
background a colour shift moves the latent mean far but barely changes the variance, which the
paper's both-must-move rule would never flag.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch


@dataclass(frozen=True)
class DriftSettings:
    rho_mu: float = 0.9
    rho_sigma: float = 0.9
    delta_mu: float = 0.15
    delta_sigma: float = 0.15
    corrupt_strength: float = 0.1
    gross_factor: float = 0.0  # 0: the released rule (both statistics must move)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DriftSettings:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown drift settings: {', '.join(unknown)}")
        values = {key: float(value) for key, value in data.items()}
        if any(not math.isfinite(v) or v < 0 or (v == 0 and k != "gross_factor") for k, v in values.items()):
            raise ValueError(f"drift settings must be positive finite numbers (gross_factor may be 0), got {data}")
        return cls(**values)


def calibrate(
    sequences: list[list[torch.Tensor]],
    margin: float = 1.5,
    base: DriftSettings = DriftSettings(),
    gross_factor: float = 3.0,
) -> DriftSettings:
    """Thresholds for a codec from its latents of clean video: each sequence is the per-chunk latents
    (B, C, T, H, W) of one video, in order; the thresholds are ``margin`` × the largest deviation any
    clean chunk shows from the running statistics (so clean video never trips them), and one
    statistic alone past ``gross_factor`` × its threshold is a drift too."""
    largest_mu, largest_sigma = 0.0, 0.0
    for chunks in sequences:
        monitor = DriftMonitor(base)
        for latents in chunks:
            deviation = monitor.deviation(latents)
            monitor.observe(latents)
            if deviation is not None:
                largest_mu, largest_sigma = max(largest_mu, deviation[0]), max(largest_sigma, deviation[1])
    if largest_mu == 0.0 or largest_sigma == 0.0:
        raise ValueError("calibration needs sequences of at least two chunks")
    return replace(base, delta_mu=margin * largest_mu, delta_sigma=margin * largest_sigma, gross_factor=gross_factor)


class DriftMonitor:
    def __init__(self, settings: DriftSettings = DriftSettings(), seed: int = 0):
        self.settings = settings
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.flags: list[bool] = []

    @staticmethod
    def _statistics(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = latents.detach().float()
        return x.mean(dim=(2, 3, 4)).mean(0), x.var(dim=(2, 3, 4)).mean(0)

    def deviation(self, latents: torch.Tensor) -> tuple[float, float] | None:
        """(‖μ − μ̄‖₂, ‖σ² − σ̄²‖₂) of a chunk against the running statistics (None before the first)."""
        if self.mean is None:
            return None
        mean, var = self._statistics(latents)
        return float(torch.linalg.vector_norm(mean - self.mean)), float(torch.linalg.vector_norm(var - self.var))

    def observe(self, latents: torch.Tensor) -> bool:
        """Record a chunk's latents (B, C, T, H, W); True if it drifts from the running statistics."""
        mean, var = self._statistics(latents)
        s = self.settings
        if self.mean is None:
            self.mean, self.var = mean, var
            self.flags.append(False)
            return False
        deviation_mu, deviation_sigma = self.deviation(latents)
        drifting = deviation_mu > s.delta_mu and deviation_sigma > s.delta_sigma
        if s.gross_factor > 0:
            gross = s.gross_factor
            drifting = drifting or deviation_mu > gross * s.delta_mu or deviation_sigma > gross * s.delta_sigma
        self.mean = s.rho_mu * self.mean + (1 - s.rho_mu) * mean
        self.var = s.rho_sigma * self.var + (1 - s.rho_sigma) * var
        self.flags.append(drifting)
        return drifting

    def corrupt(self, latents: torch.Tensor) -> torch.Tensor:
        """Frame-Aware Corrupt for inference: every frame blended with fresh noise at strength s."""
        noise = torch.randn(latents.shape, generator=self.generator).to(latents.device, latents.dtype)
        s = self.settings.corrupt_strength
        return s * noise + (1 - s) * latents
