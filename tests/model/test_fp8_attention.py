"""The FP8 attention kernel (model/kernels/fp8_attention.py) against exact attention and against the
same quantisation emulated in fp32; run under Triton's interpreter on the CPU (a fresh process: the
interpreter is chosen when kernels are defined). tests/gpu checks it on the card itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

SCRIPT = r"""
import torch
import torch.nn.functional as F
from helios.model.attention import attention
from helios.model.kernels.fp8_attention import fp8_attention, fp8_attention_emulated

def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()

def exact(q, k, v):
    return F.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)

torch.manual_seed(0)
# self-attention over 200 tokens (not a whole block), cross-attention of 150 queries to 77 keys (one block)
# and of 130 to 300 (three); one query block holds an outlier, one key block is 3x larger than the others:
# the per-block scales must be read from the right place for the kernel to equal its emulation
for case, (queries, keys) in enumerate(((200, 200), (150, 77), (130, 300))):
    q, k, v = (torch.randn(1, n, 2, 32) for n in (queries, keys, keys))
    q[0, 5, 1] *= 40
    k[:, 128:256] *= 3
    out = fp8_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == torch.float32
    # the same algorithm and roundings; exp2 against exp can flip the rounding of a rare P (2 of 135,000)
    assert rel(out, fp8_attention_emulated(q, k, v)) < 1e-4
    # its two errors are real: the quantised Q, K, V, and P rounded to e4m3 (larger where the 3x key block
    # makes the softmax peaky: 13 % in the third case, 5-8 % in the others)
    unrounded = fp8_attention_emulated(q, k, v, round_probabilities=False)
    assert 0.01 < rel(unrounded, exact(q, k, v)) < 0.2 and rel(out, unrounded) > 0.003
    assert rel(out, exact(q, k, v)) < 0.2
    if case == 0:
        assert torch.equal(attention(q, k, v, "fp8"), out)  # the backend is this kernel
        # controls that must fail: the keys in another order, the values of another head
        assert rel(fp8_attention(q, k[:, torch.randperm(keys)], v), exact(q, k, v)) > 0.3
        assert rel(fp8_attention(q, k, v.roll(1, dims=2)), exact(q, k, v)) > 0.5
        # bf16 in, bf16 out (the interpreter's bf16 rounding is not the GPU's: only near the emulation)
        half = fp8_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        assert half.dtype == torch.bfloat16
        assert rel(half, fp8_attention_emulated(q.bfloat16(), k.bfloat16(), v.bfloat16())) < 0.01
print("ok")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the kernel runs on the card: tests/gpu")
def test_fp8_attention_kernel_against_exact_and_emulated_attention():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr[-3000:]


def test_fp8_attention_refuses_what_it_cannot_do():
    from helios.model.attention import attention, is_available

    x = torch.randn(1, 8, 2, 32)
    with pytest.raises(RuntimeError, match="inference only"):
        attention(x.clone().requires_grad_(), x, x, "fp8")
    odd = torch.randn(1, 8, 2, 24)
    with pytest.raises(ValueError, match="power-of-two head size"):
        attention(odd, odd, odd, "fp8")
    if os.environ.get("TRITON_INTERPRET") != "1":  # a plain CPU: no kernel, a clear error
        assert not is_available("fp8", "cpu")
        with pytest.raises(RuntimeError, match="needs Triton on a CUDA device"):
            attention(x, x, x, "fp8")
