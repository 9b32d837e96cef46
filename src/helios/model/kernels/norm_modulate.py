"""Fused LayerNorm + per-segment modulation: y = LN(x)·(1 + scale) + shift (paper §4.3, "Flash Norm").

One program per token row: the row is normalised in fp32 and modulated with its segment's vectors
(history rows < ``history`` use the history shift/scale, the rest the noisy ones), then written in
the output dtype — one read of x and one write of y instead of the reference path's fp32 round trips.

Backward (unlike the official kernel, no gradient is dropped): dx in one fused kernel; the shift and
scale gradients (which reach ``scale_shift_table`` and the timestep embedding) by reductions.

Runs on CUDA; on the CPU only under Triton's interpreter (``TRITON_INTERPRET=1``, used by the tests).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the reference path is used
    triton = None


def available(device: torch.device) -> bool:
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _row(L, D, BLOCK: tl.constexpr):
        """This program's token row, its sample and position, and the column mask."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        return row, row // L, row % L, cols, cols < D

    @triton.jit
    def _forward_kernel(
        X,
        Y,
        MEAN,
        RSTD,
        SHIFT_H,
        SCALE_H,
        SHIFT_C,
        SCALE_C,
        stride_h,
        stride_c,
        L,
        HISTORY,
        D,
        eps,
        BLOCK: tl.constexpr,
    ):
        row, batch, position, cols, mask = _row(L, D, BLOCK)
        x = tl.load(X + row * D + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=0) / D
        centred = tl.where(mask, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)
        normed = centred * rstd
        in_history = position < HISTORY
        shift_h = tl.load(SHIFT_H + batch * stride_h + cols, mask=mask, other=0.0)
        scale_h = tl.load(SCALE_H + batch * stride_h + cols, mask=mask, other=0.0)
        shift_c = tl.load(SHIFT_C + batch * stride_c + cols, mask=mask, other=0.0)
        scale_c = tl.load(SCALE_C + batch * stride_c + cols, mask=mask, other=0.0)
        shift = tl.where(in_history, shift_h, shift_c)
        scale = tl.where(in_history, scale_h, scale_c)
        y = normed * (1.0 + scale) + shift
        tl.store(Y + row * D + cols, y.to(Y.dtype.element_ty), mask=mask)
        tl.store(MEAN + row, mean)
        tl.store(RSTD + row, rstd)

    @triton.jit
    def _backward_kernel(
        X, DY, DX, MEAN, RSTD, SCALE_H, SCALE_C, stride_h, stride_c, L, HISTORY, D, BLOCK: tl.constexpr
    ):
        row, batch, position, cols, mask = _row(L, D, BLOCK)
        x = tl.load(X + row * D + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * D + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + row)
        rstd = tl.load(RSTD + row)
        normed = tl.where(mask, (x - mean) * rstd, 0.0)
        scale_h = tl.load(SCALE_H + batch * stride_h + cols, mask=mask, other=0.0)
        scale_c = tl.load(SCALE_C + batch * stride_c + cols, mask=mask, other=0.0)
        scale = tl.where(position < HISTORY, scale_h, scale_c)
        g = tl.where(mask, dy * (1.0 + scale), 0.0)
        mean_g = tl.sum(g, axis=0) / D
        mean_gx = tl.sum(g * normed, axis=0) / D
        dx = (g - mean_g - normed * mean_gx) * rstd
        tl.store(DX + row * D + cols, dx.to(DX.dtype.element_ty), mask=mask)


def _rows(vector: torch.Tensor, batch: int) -> tuple[torch.Tensor, int]:
    """A (Bs, 1, D) modulation vector as contiguous fp32 rows and its batch stride (0: broadcast)."""
    rows = vector.reshape(vector.shape[0], -1).float().contiguous()
    return rows, (rows.shape[1] if rows.shape[0] == batch and batch > 1 else 0)


def _segment_sum(values: torch.Tensor, start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    """Sum (B, L, D) rows start..stop into the shape of a (Bs, 1, D) vector (summing the batch if Bs = 1)."""
    total = values[:, start:stop].sum(dim=1, keepdim=True)
    if like.shape[0] == 1 and total.shape[0] > 1:
        total = total.sum(dim=0, keepdim=True)
    return total.to(like.dtype)


class _NormModulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift_h, scale_h, shift_c, scale_c, history: int, eps: float, out_dtype):
        batch, length, dim = x.shape
        x_rows = x.contiguous()
        y = torch.empty(batch, length, dim, device=x.device, dtype=out_dtype)
        mean = torch.empty(batch * length, device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        (sh, stride_h), (sch, _) = _rows(shift_h, batch), _rows(scale_h, batch)
        (sc, stride_c), (scc, _) = _rows(shift_c, batch), _rows(scale_c, batch)
        block = triton.next_power_of_2(dim)
        _forward_kernel[(batch * length,)](
            x_rows, y, mean, rstd, sh, sch, sc, scc, stride_h, stride_c, length, history, dim, eps, BLOCK=block
        )
        ctx.save_for_backward(x_rows, mean, rstd, sch, scc, shift_h, scale_h, shift_c, scale_c)
        ctx.history, ctx.strides, ctx.block = history, (stride_h, stride_c), block
        return y

    @staticmethod
    def backward(ctx, dy):
        x, mean, rstd, sch, scc, shift_h, scale_h, shift_c, scale_c = ctx.saved_tensors
        batch, length, dim = x.shape
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        _backward_kernel[(batch * length,)](
            x, dy, dx, mean, rstd, sch, scc, *ctx.strides, length, ctx.history, dim, BLOCK=ctx.block
        )
        g = dy.float()
        normed = (x.float() - mean.view(batch, length, 1)) * rstd.view(batch, length, 1)
        weighted = g * normed
        h = ctx.history
        grads_history = (_segment_sum(g, 0, h, shift_h), _segment_sum(weighted, 0, h, scale_h)) if h else (None, None)
        d_shift_c, d_scale_c = _segment_sum(g, h, length, shift_c), _segment_sum(weighted, h, length, scale_c)
        if h == 0:
            return dx, None, None, d_shift_c, d_scale_c, None, None, None
        return dx, grads_history[0], grads_history[1], d_shift_c, d_scale_c, None, None, None


def norm_modulate(
    x: torch.Tensor,
    shifts: list[torch.Tensor],
    scales: list[torch.Tensor],
    lengths: list[int],
    eps: float,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """y = LN(x)·(1 + scale) + shift per segment; ``shifts``/``scales`` hold (Bs, 1, D) vectors for the
    segments of ``lengths`` (one segment, or history then noisy)."""
    if len(lengths) == 1:
        return _NormModulate.apply(x, shifts[0], scales[0], shifts[0], scales[0], 0, eps, out_dtype)
    return _NormModulate.apply(x, shifts[0], scales[0], shifts[1], scales[1], lengths[0], eps, out_dtype)
