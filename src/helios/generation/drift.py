"""Adaptive sampling (paper §3.5, eq. 17–19): watch latent statistics, corrupt drifting history.

After each chunk the per-channel mean μ and variance σ² of its latents are compared with their
EMA over earlier chunks; a chunk whose ‖μ − μ̄‖₂ and ‖σ² − σ̄²‖₂ both exceed their thresholds is
drifting. Its frames are then corrupted *in the history only* (Frame-Aware Corrupt, x ← s·ε +
(1 − s)·x per frame), so the next chunk leans less on them; the output keeps the clean frames.
Fixes to the official version: detection is against the EMA *before* it absorbs the current
chunk, and the corruption never reaches the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DriftSettings:
    rho_mu: float = 0.9
    rho_sigma: float = 0.9
    delta_mu: float = 0.15
    delta_sigma: float = 0.15
    corrupt_strength: float = 0.1


class DriftMonitor:
    def __init__(self, settings: DriftSettings = DriftSettings(), seed: int = 0):
        self.settings = settings
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.flags: list[bool] = []

    def observe(self, latents: torch.Tensor) -> bool:
        """Record a chunk's latents (B, C, T, H, W); True if it drifts from the running statistics."""
        x = latents.detach().float()
        mean = x.mean(dim=(2, 3, 4)).mean(0)
        var = x.var(dim=(2, 3, 4)).mean(0)
        s = self.settings
        if self.mean is None:
            self.mean, self.var = mean, var
            self.flags.append(False)
            return False
        drifting = bool(
            torch.linalg.vector_norm(mean - self.mean) > s.delta_mu
            and torch.linalg.vector_norm(var - self.var) > s.delta_sigma
        )
        self.mean = s.rho_mu * self.mean + (1 - s.rho_mu) * mean
        self.var = s.rho_sigma * self.var + (1 - s.rho_sigma) * var
        self.flags.append(drifting)
        return drifting

    def corrupt(self, latents: torch.Tensor) -> torch.Tensor:
        """Frame-Aware Corrupt for inference: every frame blended with fresh noise at strength s."""
        noise = torch.randn(latents.shape, generator=self.generator).to(latents.device, latents.dtype)
        s = self.settings.corrupt_strength
        return s * noise + (1 - s) * latents
