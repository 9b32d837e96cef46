"""Multi-term memory, token segments and RoPE details not covered by the end-to-end parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helios import HeliosTransformer
from helios.config import TINY
from helios.model.memory import init_memory_from_patch_embedding
from helios.model.offload import offload_model_blocks
from helios.model.rope import apply_rope, rope_table
from helios.model.speed import compile_blocks, fuse_qkv
from helios.model.window import HistoryInputs


def test_memory_patch_init_is_average_pool_then_patch_embed():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY)
    init_memory_from_patch_embedding(model, model.patch_embedding)
    latents = torch.randn(1, 16, 4, 16, 16)
    for conv, factor in ((model.patch_short, 1), (model.patch_mid, 2), (model.patch_long, 4)):
        pooled = F.avg_pool3d(latents, factor) if factor > 1 else latents
        expected = model.patch_embedding(pooled)
        got = conv(latents)
        assert torch.allclose(got, expected, atol=1e-5)


def test_rope_preserves_norm_of_uncompressed_tokens():
    table = rope_table(torch.tensor([[0, 5, 19]]), 3, 4, (6, 6, 4), 10000.0)
    x = torch.randn(1, len(table), 2, 16)
    rotated = apply_rope(x, table)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_pooled_rope_averages_values_not_angles():
    """The compressed parts shrink fast rotations (norm < 1): the released behaviour."""
    table = rope_table(torch.arange(1, 17)[None], 12, 20, (44, 42, 42), 10000.0, pool=4)
    magnitude = table.cos**2 + table.sin**2
    assert len(table) == 4 * 3 * 5
    assert magnitude.max() <= 1 + 1e-5
    assert magnitude.min() < 0.5  # highest frequencies are nearly cancelled by averaging


@pytest.mark.parametrize(
    "history, message",
    [
        (HistoryInputs(short=torch.zeros(1, 16, 2, 4, 4)), "history 'short': latents given without indices"),
        (HistoryInputs(indices_mid=torch.tensor([[1, 2]])), "history 'mid': indices given without latents"),
        (
            HistoryInputs(mid=torch.zeros(1, 16, 2, 4, 4), indices_mid=torch.tensor([[1, 2]])),
            "mid/long history needs the short history",
        ),
        (
            HistoryInputs(short=torch.zeros(1, 16, 2, 4, 4), indices_short=torch.tensor([[0, 1, 2]])),
            "has 3 entries for 2 frames",
        ),
    ],
)
def test_history_input_errors(history, message):
    with pytest.raises(ValueError, match=message):
        history.validate()


def test_forward_rejects_impossible_sizes():
    model = HeliosTransformer.from_config(TINY)
    text = torch.randn(1, 4, 32)
    with pytest.raises(ValueError, match=r"latent size 5×6 is not divisible by the patch size 2×2"):
        model(torch.randn(1, 16, 1, 5, 6), torch.tensor([1]), text)
    with pytest.raises(ValueError, match=r"hidden_states must be \(B, 16, T, H, W\)"):
        model(torch.randn(1, 3, 1, 4, 4), torch.tensor([1]), text)
    with pytest.raises(ValueError, match=r"timestep must be a scalar or have shape \(2,\)"):
        model(torch.randn(2, 16, 1, 4, 4), torch.tensor([1, 2, 3]), text.expand(2, -1, -1))


def test_return_dict_false_gives_a_tuple_like_diffusers():
    model = HeliosTransformer.from_config(TINY).eval()
    hidden, text = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 4, 32)
    with torch.no_grad():
        plain = model(hidden, 10, text)
        (as_tuple,) = model(hidden, 10, text, return_dict=False)
    assert torch.equal(plain, as_tuple)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY)
    hidden = torch.randn(1, 16, 2, 4, 4)
    text = torch.randn(1, 4, 32)
    short = {
        "latents_history_short": torch.randn(1, 16, 2, 8, 8),
        "indices_latents_history_short": torch.tensor([[0, 3]]),
    }
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.enable_gradient_checkpointing(enabled)
        model(hidden, torch.tensor([500]), text, **short).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "blocks.1.attn1.to_q.weight" in grads[0]
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def _window_call(model, batch=1):
    generator = torch.Generator().manual_seed(0)
    kwargs = {
        "indices_hidden_states": torch.arange(20, 29)[None],
        "indices_latents_history_short": torch.tensor([[0, 19]]),
        "indices_latents_history_mid": torch.tensor([[17, 18]]),
        "indices_latents_history_long": torch.arange(1, 17)[None],
        "latents_history_short": torch.randn(batch, 16, 2, 8, 8, generator=generator),
        "latents_history_mid": torch.randn(batch, 16, 2, 8, 8, generator=generator),
        "latents_history_long": torch.randn(batch, 16, 16, 8, 8, generator=generator),
    }
    hidden = torch.randn(batch, 16, 9, 4, 4, generator=generator)
    return model(hidden, torch.tensor([700]), torch.randn(batch, 5, 32, generator=generator), **kwargs)


def test_rope_and_zero_time_caches_are_exact_and_follow_weight_changes():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    with torch.no_grad():
        first = _window_call(model)
        assert len(model.rope_cache.tables) == 4 and len(model._zero_time_cache) == 1
        again = _window_call(model)
        assert torch.equal(first, again) and len(model.rope_cache.tables) == 4
        model.rope_cache.tables.clear()
        model._zero_time_cache.clear()
        assert torch.equal(_window_call(model), first)  # cached = freshly computed
        model.condition_embedder.time_proj.weight.add_(0.5)  # an in-place update (as an optimizer step)
        changed = _window_call(model)
        model._zero_time_cache.clear()
        assert torch.equal(changed, _window_call(model)) and not torch.equal(changed, first)


def test_inference_then_training_on_one_model():
    """Regression: tables cached under inference_mode must not reach a backward pass."""
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY)
    with torch.inference_mode():
        _window_call(model)
    loss = _window_call(model).square().mean()
    loss.backward()
    assert model.patch_embedding.weight.grad is not None


def test_fused_qkv_matches_separate_projections_and_tracks_weight_updates():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    with torch.no_grad():
        reference = _window_call(model)
        fuse_qkv(model, True)
        fused = _window_call(model)
        assert (fused - reference).abs().max().item() < 1e-5
        model.blocks[0].attn1.to_k.weight.mul_(1.5)  # in-place change: the concatenation must follow
        fuse_qkv(model, False)
        changed = _window_call(model)
        fuse_qkv(model, True)
        assert (_window_call(model) - changed).abs().max().item() < 1e-5
    # With autograd the fused path backpropagates into the three original parameters.
    model.train()
    _window_call(model).square().mean().backward()
    assert model.blocks[1].attn1.to_v.weight.grad is not None


def test_compiled_blocks_match_eager():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    with torch.no_grad():
        eager = _window_call(model)
        compile_blocks(model)
        compiled = _window_call(model)
        compile_blocks(model, False)
        assert all(block._compiled_call_impl is None for block in model.blocks)
        assert torch.equal(_window_call(model), eager)
    assert (compiled - eager).abs().max().item() < 1e-5


@pytest.mark.parametrize("scales", ["per_row", "per_tensor"])
def test_fp8_quantisation_error_is_reported_per_layer_and_end_to_end(scales):
    from helios.model.fp8 import FP8Linear, fp8_error_report, quantize_linears

    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    quantized = quantize_linears(model, scales)
    assert (
        isinstance(quantized.blocks[0].attn1.to_q, FP8Linear)
        and quantized.blocks[0].attn1.to_q.weight_fp8.dtype == torch.float8_e4m3fn
    )
    assert isinstance(model.blocks[0].attn1.to_q, torch.nn.Linear)  # the original is untouched
    generator = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(1, 16, 3, 8, 8, generator=generator),
        timestep=torch.tensor([500]),
        encoder_hidden_states=torch.randn(1, 5, 32, generator=generator),
    )
    with torch.no_grad():
        expected_output = quantized(**inputs)
    report = fp8_error_report(model, inputs, scales)
    assert isinstance(model.blocks[0].attn1.to_q, FP8Linear)  # the report leaves the model quantised...
    with torch.no_grad():
        assert torch.equal(model(**inputs), expected_output)  # ...exactly as quantize_linears does
    assert len(report["per_layer"]) == 2 * 10  # 2 blocks × (4 + 4 attention projections + 2 FFN layers)
    # e4m3 keeps 3 mantissa bits: a single GEMM's error is a few percent at most, and not zero.
    assert 1e-3 < report["mean_layer"] < 0.06
    assert 1e-3 < report["end_to_end"] < 0.2


@pytest.mark.parametrize("scales", ["per_row", "per_tensor"])
def test_fp8_gemm_kernel_matches_the_emulated_product(scales):
    """torch._scaled_mm (the tensor-core path; PyTorch's CPU build implements it) against the
    dequantised reference: the same e4m3 operands, so they differ only by the output rounding."""
    from helios.model.fp8 import FP8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(2, 7, 64, dtype=torch.bfloat16)
    kernel, emulated = FP8Linear(linear, scales, "scaled_mm"), FP8Linear(linear, scales, "emulated")
    got, expected = kernel(x), emulated(x)
    assert got.shape == (2, 7, 48) and got.dtype == torch.bfloat16
    exact = linear(x).float()
    assert ((got.float() - expected.float()).norm() / expected.float().norm()).item() < 1e-2
    assert 1e-3 < ((got.float() - exact).norm() / exact.norm()).item() < 0.06  # e4m3's own error, not more


def test_fp8_in_place_quantisation_frees_the_16_bit_weights_and_runs_end_to_end():
    from helios.model.fp8 import FP8Linear, quantize_linears

    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    with torch.no_grad():
        reference = _window_call(model)
        fuse_qkv(model, True)  # FP8 projections keep their three GEMMs
        assert quantize_linears(model, "per_row", "scaled_mm", inplace=True) is model
        assert isinstance(model.blocks[1].ffn.net[2], FP8Linear) and not hasattr(model.blocks[1].ffn.net[2], "weight")
        got = _window_call(model)
    assert 1e-3 < ((got - reference).norm() / reference.norm()).item() < 0.2


def test_fp8_rejects_sizes_the_gemm_cannot_take():
    from helios.model.fp8 import FP8Linear

    with pytest.raises(ValueError, match="divisible by 16"):
        FP8Linear(torch.nn.Linear(20, 32))
    with pytest.raises(ValueError, match="kernel must be one of"):
        FP8Linear(torch.nn.Linear(32, 32), kernel="cutlass")


def test_block_offload_streams_weights_through_two_slots_and_changes_nothing():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config({**TINY.to_dict(), "num_layers": 3}).eval()
    with torch.no_grad():
        reference = _window_call(model)
        offload = offload_model_blocks(model, "blocks", "cpu", slots=2)
        first, second = _window_call(model), _window_call(model)  # the second call starts from the prefetched block 0
    assert torch.equal(first, reference) and torch.equal(second, reference)
    block_bytes = sum(p.numel() * p.element_size() for p in model.blocks[0].parameters())
    assert offload.device_bytes == 2 * block_bytes and offload.host_bytes == 3 * block_bytes
    offload.remove()
    with torch.no_grad():
        assert torch.equal(_window_call(model), reference)


def test_block_offload_rejects_unequal_blocks():
    from helios.model.offload import BlockOffload

    with pytest.raises(ValueError, match="identical parameter shapes"):
        BlockOffload(torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 8)]), "cpu")


def test_block_offload_of_the_umt5_encoder_layers():
    from transformers import UMT5Config, UMT5EncoderModel

    from helios.model.offload import offload_model_blocks

    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=64,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=3,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        is_gated_act=True,
    )
    model = UMT5EncoderModel(config).eval()
    ids = torch.randint(0, 64, (1, 10))
    with torch.no_grad():
        reference = model(ids).last_hidden_state
        offload_model_blocks(model, "encoder.block", "cpu")
        assert torch.equal(model(ids).last_hidden_state, reference)
