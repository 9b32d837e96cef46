"""Classifier-free guidance and CFG-Zero*."""

from __future__ import annotations

import torch


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


def cfg_zero_star(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """CFG-Zero*: scale the unconditional branch by α* = ⟨v_c, v_u⟩/‖v_u‖² per sample (fp32)."""
    batch = cond.shape[0]
    c, u = cond.reshape(batch, -1).float(), uncond.reshape(batch, -1).float()
    alpha = (c * u).sum(1, keepdim=True) / ((u**2).sum(1, keepdim=True) + 1e-8)
    alpha = alpha.view(batch, *([1] * (cond.ndim - 1))).to(cond.dtype)
    return uncond * alpha + scale * (cond - uncond * alpha)


def zeroed_by_cfg_zero_init(stage: int, step: int, zero_steps: int) -> bool:
    """CFG-Zero*'s zero-init: the prediction of the first ``zero_steps + 1`` steps of stage 0 is zero.

    The released pipelines still ran both forwards on those steps; we skip them (output × 0).
    """
    return stage == 0 and step <= zero_steps
