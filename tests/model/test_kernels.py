"""Triton kernels against the reference path, run on the CPU through Triton's interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

SCRIPT = r"""
import os, torch
from helios import HeliosTransformer
from helios.config import TINY
from helios.model.kernels import norm_modulate as kernel
from helios.model.speed import use_fused_kernels
from helios.model.transformer import SegmentModulation, layer_norm_fp32

assert kernel.available(torch.device("cpu"))
torch.manual_seed(0)
# 1. The op alone: two segments, per-sample (B = 2) and broadcast (Bs = 1) vectors; forward and backward.
x = torch.randn(2, 7, 48, requires_grad=True)
table = torch.randn(1, 6, 48, requires_grad=True)
p_hist, p_cur = torch.randn(1, 6, 48, requires_grad=True), torch.randn(2, 6, 48, requires_grad=True)
grads = []
for fused in (False, True):
    mod = SegmentModulation(table, [p_hist, p_cur], [3, 4])
    if fused:
        shifts, scales = [v[0] for v in mod.vectors], [v[1] for v in mod.vectors]
        y = kernel.norm_modulate(x, shifts, scales, mod.lengths, 1e-6, x.dtype)
    else:
        y = mod.modulate(layer_norm_fp32(x, 1e-6), shift=0, scale=1, dtype=x.dtype)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * weight).sum().backward()
    grads.append([y.detach()] + [t.grad.clone() for t in (x, table, p_hist, p_cur)])
    for t in (x, table, p_hist, p_cur):
        t.grad = None
for reference, fused in zip(*grads):
    assert (reference - fused).abs().max().item() < 1e-4, (reference - fused).abs().max()
# 2. RoPE alone, batched table and shared table, forward and backward.
from helios.model.kernels.rope import apply_rope_fused
from helios.model.rope import apply_rope, rope_table
for indices in (torch.tensor([[0, 3, 7]]), torch.tensor([[0, 3, 7], [1, 2, 9]])):
    table = rope_table(indices, 2, 3, (6, 6, 4), 10000.0)
    q = torch.randn(2, len(table), 3, 16, requires_grad=True)
    upstream = torch.randn(2, len(table), 3, 16)
    out = []
    for rotate in (apply_rope, apply_rope_fused):
        y = rotate(q, table)
        (y * upstream).sum().backward()
        out.append((y.detach(), q.grad.clone()))
        q.grad = None
    assert (out[0][0] - out[1][0]).abs().max().item() < 1e-5
    assert (out[0][1] - out[1][1]).abs().max().item() < 1e-5
# 3. The whole model, with history, forward and parameter gradients.
model = HeliosTransformer.from_config(TINY)
generator = torch.Generator().manual_seed(2)
hidden, text = torch.randn(2, 16, 2, 4, 4, generator=generator), torch.randn(2, 5, 32, generator=generator)
short = torch.randn(2, 16, 2, 4, 4, generator=generator)
kwargs = dict(indices_latents_history_short=torch.tensor([[0, 5]]), latents_history_short=short)
results = []
for fused in (False, True):
    use_fused_kernels(model, fused)
    model.zero_grad()
    out = model(hidden, torch.tensor([900, 100]), text, **kwargs)
    out.square().mean().backward()
    results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
(out_ref, g_ref), (out_fused, g_fused) = results
assert (out_ref - out_fused).abs().max().item() < 1e-4
assert g_ref.keys() == g_fused.keys() and "blocks.0.scale_shift_table" in g_fused
for name in g_ref:
    assert torch.allclose(g_ref[name], g_fused[name], atol=1e-4, rtol=1e-3), name
print("ok")
"""


def test_fused_norm_modulation_matches_reference_forward_and_backward():
    # The interpreter is chosen when kernels are defined, so the check runs in a fresh process.
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_fused_kernels_fall_back_where_triton_cannot_run():
    """On a plain CPU (no interpreter) enabling the kernels keeps the reference path, bit for bit."""
    import torch

    from helios import HeliosTransformer
    from helios.config import TINY
    from helios.model.kernels import norm_modulate
    from helios.model.speed import use_fused_kernels

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter is on in this process")
    assert not norm_modulate.available(torch.device("cpu"))
    model = HeliosTransformer.from_config(TINY).eval()
    hidden, text = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, 32)
    with torch.no_grad():
        reference = model(hidden, torch.tensor([500]), text)
        use_fused_kernels(model, True)
        assert torch.equal(model(hidden, torch.tensor([500]), text), reference)
