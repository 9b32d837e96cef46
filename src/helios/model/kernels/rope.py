"""Fused RoPE: rotate interleaved channel pairs of q or k (B, L, heads, dh) in one pass (paper §4.3).

One program per token: all heads of the token are rotated with the token's cos/sin (fp32 math, the
result in the input's dtype). The backward pass is the rotation by the opposite angle.
Runs on CUDA; on the CPU only under Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch

from ..rope import RopeTable
from .norm_modulate import available, triton

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _rope_kernel(
        X, Y, COS, SIN, L, table_batch_stride, HEADS, HALF, direction, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr
    ):
        row = tl.program_id(0)  # one token of one sample
        batch = row // L
        position = row % L
        heads = tl.arange(0, BLOCK_H)[:, None]
        pairs = tl.arange(0, BLOCK_P)[None, :]
        mask = (heads < HEADS) & (pairs < HALF)
        table = batch * table_batch_stride + position * HALF + pairs
        cos = tl.load(COS + table, mask=pairs < HALF, other=0.0)
        sin = tl.load(SIN + table, mask=pairs < HALF, other=0.0) * direction
        base = row * HEADS * HALF * 2 + heads * HALF * 2 + pairs * 2
        even = tl.load(X + base, mask=mask, other=0.0).to(tl.float32)
        odd = tl.load(X + base + 1, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + base, (even * cos - odd * sin).to(Y.dtype.element_ty), mask=mask)
        tl.store(Y + base + 1, (even * sin + odd * cos).to(Y.dtype.element_ty), mask=mask)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, direction: float) -> torch.Tensor:
    batch, length, heads, dim = x.shape
    x = x.contiguous()
    out = torch.empty_like(x)
    stride = length * (dim // 2) if cos.shape[0] > 1 else 0
    _rope_kernel[(batch * length,)](
        x,
        out,
        cos,
        sin,
        length,
        stride,
        heads,
        dim // 2,
        direction,
        BLOCK_H=triton.next_power_of_2(heads),
        BLOCK_P=triton.next_power_of_2(dim // 2),
    )
    return out


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, sin, -1.0), None, None


def apply_rope_fused(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    return _Rope.apply(x, table.cos.float().contiguous(), table.sin.float().contiguous())


__all__ = ["apply_rope_fused", "available"]
