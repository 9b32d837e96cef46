"""Pyramid stage transitions (paper §3.3.2): start low-res, upsample and re-noise between stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..devices import to_device
from .schedules import PyramidConstants, renoise_coefficients


def _per_frame(latents: torch.Tensor, fn) -> torch.Tensor:
    """Apply a 2-D resize to every frame of (B, C, T, H, W)."""
    b, c, t, _, _ = latents.shape
    frames = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, *latents.shape[-2:])
    frames = fn(frames)
    return frames.reshape(b, t, c, *frames.shape[-2:]).permute(0, 2, 1, 3, 4)


def downsample(latents: torch.Tensor) -> torch.Tensor:
    """One pyramid level down: bilinear ½ of every frame (B, C, T, H, W)."""
    return _per_frame(latents, lambda x: F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bilinear"))


def upsample(latents: torch.Tensor) -> torch.Tensor:
    """One pyramid level up: nearest ×2 of every frame (B, C, T, H, W)."""
    return _per_frame(latents, lambda x: F.interpolate(x, size=(x.shape[-2] * 2, x.shape[-1] * 2), mode="nearest"))


def downsample_noise(noise: torch.Tensor, stages: int) -> torch.Tensor:
    """Full-resolution noise → the first stage's size: bilinear ½ per stage, ×2 in value to keep unit
    variance (bilinear halving averages four samples, dividing the standard deviation by 2)."""
    for _ in range(stages - 1):
        noise = downsample(noise) * 2
    return noise


def block_noise_factor(gamma: float, block: int = 4) -> torch.Tensor:
    """Cholesky factor of the 2×2-block covariance (1 + γ)I − γ·11ᵀ (+1e-8·I), float32.

    With γ = 1/3 the matrix is singular (the blocks have zero mean); the released code factorises
    it in float32, which fails on CPU LAPACK. Factorising in float64, where the 1e-8 jitter is
    representable, gives the same factor robustly on every device.
    """
    cov = torch.eye(block, dtype=torch.float64) * (1 + gamma) - torch.ones(block, block, dtype=torch.float64) * gamma
    cov += torch.eye(block, dtype=torch.float64) * 1e-8
    return torch.linalg.cholesky(cov).float()


def block_noise(
    shape: tuple[int, int, int, int, int], gamma: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Noise correlated inside each 2×2 spatial block, drawn as (blocks, 4) normals (released order)."""
    b, c, t, h, w = shape
    factor = block_noise_factor(gamma)
    draw_device = generator.device if generator is not None else device
    z = to_device(torch.randn(b * c * t * (h // 2) * (w // 2), 4, generator=generator, device=draw_device), device)
    noise = z @ to_device(factor, device).T
    noise = noise.view(b, c, t, h // 2, w // 2, 2, 2).permute(0, 1, 2, 3, 5, 4, 6)
    return noise.reshape(b, c, t, h, w)


def upsample_and_renoise(
    latents: torch.Tensor,
    stage: int,
    constants: PyramidConstants,
    generator: torch.Generator | None,
    noise_dtype: torch.dtype,
) -> torch.Tensor:
    """Enter ``stage``: nearest ×2 upsample, then x ← alpha·x + beta·block_noise (paper eq. 10)."""
    up = upsample(latents)
    alpha, beta = renoise_coefficients(constants.ori_start_sigmas[stage], constants.gamma)
    noise = block_noise(tuple(up.shape), constants.gamma, generator, up.device).to(noise_dtype)
    return alpha * up + beta * noise
