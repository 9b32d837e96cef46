"""The fast paths that need a GPU, checked against the reference path on the GPU itself.

Skipped on machines without CUDA (CI); run on the GPU machine with
``python -m pytest tests/gpu`` (benchmarks/README.md records the run).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helios import HeliosTransformer
from helios.config import TINY
from helios.model.graphs import cuda_graphs_of, enable_cuda_graphs
from helios.model.offload import offload_model_blocks
from helios.model.speed import compile_blocks, fuse_qkv, use_fused_kernels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _call(model, seed=0, batch=1):
    g = torch.Generator("cuda").manual_seed(seed)
    dtype = model.dtype

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda", dtype=dtype)

    return dict(
        hidden_states=randn(batch, 16, 9, 8, 8),
        timestep=torch.tensor([700 - seed], device="cuda"),
        encoder_hidden_states=randn(batch, 5, 32),
        indices_hidden_states=torch.arange(20, 29)[None],
        indices_latents_history_short=torch.tensor([[0, 19]]),
        indices_latents_history_mid=torch.tensor([[17, 18]]),
        indices_latents_history_long=torch.arange(1, 17)[None],
        latents_history_short=randn(batch, 16, 2, 16, 16),
        latents_history_mid=randn(batch, 16, 2, 16, 16),
        latents_history_long=randn(batch, 16, 16, 16, 16),
    )


def _model(dtype=torch.bfloat16):
    torch.manual_seed(0)
    return HeliosTransformer.from_config(TINY).cast(dtype).cuda().eval()


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@torch.no_grad()
def test_cuda_graphs_replay_equals_eager_for_new_values_of_one_shape():
    model = _model()
    eager = [model(**_call(model, seed)) for seed in (0, 1, 2)]
    enable_cuda_graphs(model, True)
    graphed = [model(**_call(model, seed)) for seed in (0, 1, 2)]
    assert len(cuda_graphs_of(model).graphs) == 1  # one capture, replayed with new inputs
    for a, b in zip(graphed, eager):
        assert torch.equal(a, b)
    other_shape = model(**_call(model, 3, batch=2))
    assert len(cuda_graphs_of(model).graphs) == 2 and other_shape.shape[0] == 2


@torch.no_grad()
def test_cuda_graphs_over_compiled_fused_blocks():
    model = _model()
    eager = model(**_call(model))
    use_fused_kernels(model, True)
    fuse_qkv(model, True)
    compile_blocks(model)
    enable_cuda_graphs(model, True)
    out = model(**_call(model))
    out = model(**_call(model))  # a replay
    assert _rel(out, eager) < 2e-2


@torch.no_grad()
def test_fused_kernels_match_reference_on_the_gpu():
    model = _model(torch.float32)
    reference = model(**_call(model))
    use_fused_kernels(model, True)
    assert _rel(model(**_call(model)), reference) < 1e-5


@torch.no_grad()
def test_block_offload_on_the_gpu_streams_through_two_slots():
    model = _model()
    reference = model(**_call(model))
    offload = offload_model_blocks(model, "blocks", "cuda")
    assert all(p.device.type == "cpu" and p.is_pinned() for p in model.blocks[1].parameters())
    assert torch.equal(model(**_call(model)), reference) and torch.equal(model(**_call(model)), reference)
    assert offload.device_bytes * len(model.blocks) == 2 * offload.host_bytes


@torch.no_grad()
def test_fp8_tensor_core_gemm_matches_the_emulated_product():
    from helios.model.fp8 import FP8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512).cuda().to(torch.bfloat16)
    x = torch.randn(3, 77, 256, device="cuda", dtype=torch.bfloat16)
    for scales in ("per_row", "per_tensor"):
        got = FP8Linear(linear, scales, "scaled_mm")(x)
        expected = FP8Linear(linear, scales, "emulated")(x)
        assert _rel(got, expected) < 1e-2


def test_pipeline_with_graphs_and_overlapped_decode_gives_the_same_video():
    from helios.bench.speed import build_pipeline

    pipeline = build_pipeline("tiny", "helios-distilled", "cuda", torch.bfloat16)
    reference = pipeline.generate("a red fox", num_frames=66, seed=3, steps=1)
    enable_cuda_graphs(pipeline.transformer, True)
    pipeline.overlap_decode = True
    fast = pipeline.generate("a red fox", num_frames=66, seed=3, steps=1)
    assert torch.equal(fast.latents, reference.latents)
    assert np.array_equal(fast.frames, reference.frames)


@pytest.mark.parametrize("preset", ["helios-distilled", "helios-mid"])
def test_the_sampling_loop_never_waits_for_the_gpu(preset):
    """Every timestep, sigma and noise draw reaches the device without synchronising the stream:
    with CUDA's sync debug mode set to "error", any synchronising call inside the loop raises."""
    from helios.config import sampler_preset
    from helios.sampling.chunk import ChunkSampler
    from helios.sampling.noise import NoiseDraws

    model = _model()
    inputs = _call(model)
    text, negative = inputs["encoder_hidden_states"], torch.zeros_like(inputs["encoder_hidden_states"])
    history = {k: v for k, v in inputs.items() if k.startswith(("indices_latents", "latents_", "indices_hidden"))}

    def denoiser(latents, timestep, embedding):
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=embedding, **history)

    sampler = ChunkSampler(sampler_preset(preset), model.config.patch_size, model.dtype)
    draw = NoiseDraws(torch.Generator().manual_seed(0), torch.device("cuda"))
    noise = draw.normal((1, 16, 9, 8, 8))
    with torch.no_grad():
        sampler.sample(denoiser, noise, text, negative, draw, first_chunk=True)  # warm-up: caches, plans
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            latents = sampler.sample(denoiser, noise, text, negative, draw, first_chunk=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert latents.shape == noise.shape and torch.isfinite(latents).all()


def test_offloaded_activations_give_the_same_gradients_with_less_gpu_memory():
    """``saved_tensors_on_host`` (TrainConfig.offload_activations): with gradient checkpointing, each
    block's input waits in pinned host memory between forward and backward, copied on a stream of its own
    and brought back one tensor ahead of the backward — the same loss, the same
    gradients within fp32 noise (the GPU's backward kernels are not bit-deterministic: a first run on an
    H200 that asked for bit equality failed on the gradients, the loss equal), and the memory held at
    the end of the forward drops."""
    from helios.training.activation_offload import saved_tensors_on_host

    model = _model(torch.float32).train()
    model.enable_gradient_checkpointing(True)
    inputs = _call(model)
    results = {}
    for offload in (False, True):
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        with saved_tensors_on_host(offload, min_bytes=0):  # the tiny model's tensors are all small
            loss = model(**inputs).float().square().mean()
        held = torch.cuda.memory_allocated() - before
        loss.backward()
        results[offload] = (held, loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    (held_gpu, loss_gpu, grads_gpu), (held_host, loss_host, grads_host) = results[False], results[True]
    assert loss_host == loss_gpu
    assert max(_rel(b, a) for a, b in zip(grads_gpu, grads_host, strict=True)) < 1e-5
    assert held_host < 0.6 * held_gpu, (held_host, held_gpu)


@torch.no_grad()
def test_fp8_attention_kernel_on_the_card():
    """The Triton FP8 kernel at a 14B head size (128) and a sequence that is no whole number of blocks:
    equal to its emulation (the GPU's e4m3 conversion rounds like PyTorch's), near exact attention; the
    keys shuffled must fail."""
    from helios.model.attention import attention
    from helios.model.kernels.fp8_attention import fp8_attention_emulated

    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need Ada or Hopper")
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, 3000, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    out = attention(q, k, v, "fp8")
    exact = attention(q.float(), k.float(), v.float(), "math")
    assert _rel(out, fp8_attention_emulated(q, k, v)) < 0.01  # the same roundings; bf16 output
    assert _rel(out, exact) < 0.1
    assert _rel(attention(q, k[:, torch.randperm(3000, device="cuda")], v, "fp8"), exact) > 0.3


@torch.no_grad()
def test_fp8_attention_in_the_compiled_model_stays_near_bf16():
    from helios.model.attention import set_attention_backend

    torch.manual_seed(0)
    config = dataclasses.replace(TINY, attention_head_dim=32, rope_dim=(12, 12, 8))  # FP8 products: ≥ 32
    model = HeliosTransformer.from_config(config).cast(torch.bfloat16).cuda().eval()
    inputs = _call(model)
    reference = model(**inputs)
    set_attention_backend(model, "fp8")
    eager = model(**inputs)
    compile_blocks(model)
    compiled = model(**inputs)
    assert _rel(eager, reference) < 0.05 and _rel(compiled, eager) < 0.01
