"""FP8 (e4m3) attention for inference: a Triton flash-attention kernel whose two products run on FP8
tensor cores (the speed issue's attention lever; behind the ``fp8`` attention backend).

Scales, all computed outside the kernel in plain PyTorch (so that ``torch.compile`` fuses them with the
RoPE and norms before them, and the tests can reproduce them exactly):

* queries and keys: one scale per block of ``QUANT_BLOCK`` (128) tokens of one head — an outlier token
  costs precision only to its own block;
* values: one scale per channel of one head, over all keys — it factors out of P·V and is applied once
  in the epilogue;
* probabilities: a fixed factor (P ≤ 1 after the running max is subtracted, so P·256 uses e4m3's range),
  divided out with the softmax denominator, which is summed in fp32 from the unrounded P.

The kernel is the usual online-softmax loop (one program per block of queries of one head, keys in
blocks of 128, exp2 with log2(e) folded into the scale). Keys are zero-padded to a whole block and the
padding masked out of the scores. Forward only: training keeps the exact backends.

Runs on CUDA (FP8 ``tl.dot`` needs Hopper or Ada); on the CPU only under Triton's interpreter
(``TRITON_INTERPRET=1``, used by the tests).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from ..fp8 import E4M3, e4m3_scale, to_e4m3

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

QUANT_BLOCK = 128  # tokens per query/key scale; also the kernel's key block
P_SCALE = 256.0  # probabilities are stored as P·256 in e4m3 (a power of two: exact to undo)


def available(device: torch.device) -> bool:
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _pad_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, H, S, D) → (B, H, S', D) with S' a whole number of blocks (zero rows added)."""
    return F.pad(x, (0, 0, 0, (-x.shape[2]) % QUANT_BLOCK))


def quantize_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, D) → e4m3 (B, H, S', D) zero-padded to whole blocks, and fp32 scales (B, H, S'/128):
    one per block of 128 tokens of one head."""
    blocks = _pad_tokens(x.transpose(1, 2)).float()
    b, h, s, d = blocks.shape
    blocks = blocks.reshape(b, h, s // QUANT_BLOCK, QUANT_BLOCK, d)
    scale = e4m3_scale(blocks.abs().amax(dim=(-1, -2)))
    quantized = to_e4m3(blocks, scale[..., None, None])
    # .contiguous(): elementwise ops keep the input's transposed strides, the kernel reads plain rows
    return quantized.reshape(b, h, s, d).contiguous(), scale.contiguous()


def quantize_channels(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, D) → e4m3 (B, H, D, S') — transposed so that the kernel reads P·V's operand with the
    key axis contiguous, as FP8 tensor cores want it — and fp32 scales (B, H, D), one per channel."""
    values = _pad_tokens(v.transpose(1, 2)).float()  # zero rows do not change the amax
    scale = e4m3_scale(values.abs().amax(dim=2))
    quantized = to_e4m3(values, scale[:, :, None])
    return quantized.transpose(2, 3).contiguous(), scale.contiguous()


if triton is not None:
    _INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
    _CONFIGS = (
        [triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=1)]
        if _INTERPRETED
        else [
            triton.Config({"BLOCK_M": block}, num_warps=warps, num_stages=stages)
            for block in (64, 128)
            for warps in (4, 8)
            for stages in (2, 3, 4)
            if not (block == 64 and warps == 8)
        ]
    )

    @triton.jit
    def _round_to_e4m3(x):
        """Non-negative fp32 rounded to the nearest e4m3 value (ties to even), still in fp32. Only under
        the interpreter: its own fp32 → e4m3 conversion misrounds ~2 % of values (127.7 → 64), while
        the GPU's conversion instruction rounds like this and like PyTorch."""
        bits = x.to(tl.int32, bitcast=True)
        normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000).to(tl.float32, bitcast=True)
        subnormal = (x + 16384.0) - 16384.0  # below 2^-6 e4m3 steps by 2^-9: fp32 rounds that sum so
        return tl.where(x < 0.015625, subnormal, normal)

    @triton.jit
    def _attend_block(
        acc,
        row_max,
        row_sum,
        q,
        scale,  # q scale · softmax scale · log2(e)
        k_base,
        k_scales,
        v_base,
        start,
        KEYS,
        KEYS_PADDED,
        dims,
        HEAD_DIM: tl.constexpr,
        BLOCK_N: tl.constexpr,
        PROB_SCALE: tl.constexpr,
        ROUND_FIRST: tl.constexpr,
        MASKED: tl.constexpr,
    ):
        """One block of keys of the online softmax; only the last, partial block pays for the mask."""
        cols = start + tl.arange(0, BLOCK_N)
        k_t = tl.load(k_base + cols[None, :] * HEAD_DIM + dims[:, None])  # (D, BLOCK_N)
        scores = tl.dot(q, k_t) * (scale * tl.load(k_scales + start // BLOCK_N))
        if MASKED:
            scores = tl.where(cols[None, :] < KEYS, scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1))
        probs = tl.exp2(scores - new_max[:, None])
        correction = tl.exp2(row_max - new_max)
        row_sum = row_sum * correction + tl.sum(probs, 1)
        v = tl.load(v_base + dims[None, :] * KEYS_PADDED + cols[:, None])  # (BLOCK_N, D)
        scaled = probs * PROB_SCALE
        if ROUND_FIRST:
            scaled = _round_to_e4m3(scaled)
        acc = tl.dot(scaled.to(tl.float8e4nv), v, acc * correction[:, None])
        return acc, new_max, row_sum

    @triton.autotune(configs=_CONFIGS, key=["QUERIES", "KEYS", "HEAD_DIM"])
    @triton.jit
    def _forward_kernel(
        Q8,  # e4m3 (B, H, SQ', D)
        Q_SCALE,  # (B, H, SQ'/128)
        K8,  # e4m3 (B, H, SK', D)
        K_SCALE,  # (B, H, SK'/128)
        V8,  # e4m3 (B, H, D, SK')
        V_SCALE,  # (B, H, D)
        OUT,  # (B, SQ, H, D), strides given
        stride_ob,
        stride_os,
        stride_oh,
        HEADS,
        QUERIES,
        KEYS,
        QUERIES_PADDED,
        KEYS_PADDED,
        qk_scale,  # softmax scale · log2(e)
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        PROB_SCALE: tl.constexpr,
        ROUND_FIRST: tl.constexpr,
    ):
        block_m = tl.program_id(0)
        head = tl.program_id(1)  # batch · HEADS + head
        rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, HEAD_DIM)
        q = tl.load(Q8 + (head * QUERIES_PADDED + rows[:, None]) * HEAD_DIM + dims[None, :])
        q_scale = tl.load(Q_SCALE + head * (QUERIES_PADDED // BLOCK_N) + (block_m * BLOCK_M) // BLOCK_N)
        scale = q_scale * qk_scale
        row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
        row_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        k_base = K8 + head * KEYS_PADDED * HEAD_DIM
        k_scales = K_SCALE + head * (KEYS_PADDED // BLOCK_N)
        v_base = V8 + head * HEAD_DIM * KEYS_PADDED
        full = (KEYS // BLOCK_N) * BLOCK_N
        for start in range(0, full, BLOCK_N):
            acc, row_max, row_sum = _attend_block(
                acc, row_max, row_sum, q, scale, k_base, k_scales, v_base, start, KEYS, KEYS_PADDED, dims,
                HEAD_DIM, BLOCK_N, PROB_SCALE, ROUND_FIRST, False,
            )  # fmt: skip
        if full < KEYS:
            acc, row_max, row_sum = _attend_block(
                acc, row_max, row_sum, q, scale, k_base, k_scales, v_base, full, KEYS, KEYS_PADDED, dims,
                HEAD_DIM, BLOCK_N, PROB_SCALE, ROUND_FIRST, True,
            )  # fmt: skip
        out = acc * (tl.load(V_SCALE + head * HEAD_DIM + dims)[None, :] / PROB_SCALE) / row_sum[:, None]
        batch, h = head // HEADS, head % HEADS
        pointers = OUT + batch * stride_ob + h * stride_oh + rows[:, None] * stride_os + dims[None, :]
        tl.store(pointers, out.to(OUT.dtype.element_ty), mask=rows[:, None] < QUERIES)


@torch.library.custom_op("helios::fp8_attention_core", mutates_args=())
def fp8_attention_core(
    q8: torch.Tensor,
    q_scale: torch.Tensor,
    k8: torch.Tensor,
    k_scale: torch.Tensor,
    v8: torch.Tensor,
    v_scale: torch.Tensor,
    queries: int,
    keys: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    batch, heads, queries_padded, head_dim = q8.shape
    out = torch.empty(batch, queries, heads, head_dim, dtype=out_dtype, device=q8.device)

    def grid(meta):
        return (triton.cdiv(queries, meta["BLOCK_M"]), batch * heads)

    _forward_kernel[grid](
        q8,
        q_scale,
        k8,
        k_scale,
        v8,
        v_scale,
        out,
        out.stride(0),
        out.stride(1),
        out.stride(2),
        heads,
        queries,
        keys,
        queries_padded,
        k8.shape[2],
        math.log2(math.e) / math.sqrt(head_dim),
        HEAD_DIM=head_dim,
        BLOCK_N=QUANT_BLOCK,
        PROB_SCALE=P_SCALE,
        ROUND_FIRST=_INTERPRETED,
    )
    return out


@fp8_attention_core.register_fake
def _(q8, q_scale, k8, k_scale, v8, v_scale, queries, keys, out_dtype):
    batch, heads, _, head_dim = q8.shape
    return q8.new_empty(batch, queries, heads, head_dim, dtype=out_dtype)


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention on (B, S, heads, head_dim) tensors with FP8 products (see the module doc);
    inference only."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError("the fp8 attention backend is for inference only (it has no backward)")
    head_dim = q.shape[-1]
    if head_dim < 32 or head_dim & (head_dim - 1):  # FP8 tensor-core products reduce 32 values at a time
        raise ValueError(f"fp8 attention needs a power-of-two head size of at least 32, got {head_dim}")
    if not available(q.device):
        raise RuntimeError("the fp8 attention backend needs Triton on a CUDA device (Hopper or Ada)")
    return fp8_attention_core(*quantized_operands(q, k, v))


def quantized_operands(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple:
    """The kernel's arguments: Q, K and V quantised (see the module doc), the true lengths, the dtype."""
    (q8, q_scale), (k8, k_scale), (v8, v_scale) = quantize_blocks(q), quantize_blocks(k), quantize_channels(v)
    return q8, q_scale, k8, k_scale, v8, v_scale, q.shape[1], k.shape[1], q.dtype


def fp8_attention_emulated(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, round_probabilities: bool = True
) -> torch.Tensor:
    """The kernel's algorithm in fp32 PyTorch, runnable anywhere: the same quantisation of Q, K and V, the
    same online softmax over blocks of 128 keys and, with ``round_probabilities``, the same rounding of
    P·256 to e4m3 — so it equals the kernel up to the order of its sums (the tests' reference). Without
    the rounding it is exact attention on the quantised Q, K, V: the two errors apart."""

    def dequantized(x: torch.Tensor) -> torch.Tensor:
        quantized, scale = quantize_blocks(x)
        b, h, s, d = quantized.shape
        blocks = quantized.float().reshape(b, h, s // QUANT_BLOCK, QUANT_BLOCK, d) * scale[..., None, None]
        return blocks.reshape(b, h, s, d)[:, :, : x.shape[1]]

    queries, keys = dequantized(q), dequantized(k)
    values, v_scale = quantize_channels(v)
    values = values.float()[..., : v.shape[1]].transpose(2, 3)  # (B, H, SK, D), the scale applied last
    row_max = torch.full(queries.shape[:3], float("-inf"), device=q.device)
    row_sum = torch.zeros_like(row_max)
    acc = torch.zeros_like(queries)
    for start in range(0, k.shape[1], QUANT_BLOCK):
        block = slice(start, start + QUANT_BLOCK)
        scores = queries @ keys[:, :, block].transpose(2, 3) / math.sqrt(q.shape[-1])
        new_max = torch.maximum(row_max, scores.amax(dim=-1))
        probs = torch.exp(scores - new_max[..., None])
        correction = torch.exp(row_max - new_max)
        row_sum = row_sum * correction + probs.sum(dim=-1)
        if round_probabilities:
            probs = (probs * P_SCALE).to(E4M3).float() / P_SCALE
        acc = acc * correction[..., None] + probs @ values[:, :, block]
        row_max = new_max
    out = acc * v_scale[:, :, None, :] / row_sum[..., None]
    return out.transpose(1, 2).to(q.dtype)
