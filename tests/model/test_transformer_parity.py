"""Our transformer against diffusers 0.42.1 (the oracle) on identical tiny weights and inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helios import HeliosTransformer
from helios.config import HELIOS_14B, TINY

from ..conftest import build_reference, history_inputs, with_own_storage

FP32_TOLERANCE = 1e-5


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def run_both(
    reference, ours, batch=1, size=(6, 10), history_size=(24, 40), timestep=None, history=True, seed=1, **extra
):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, 16, 9, *size, generator=generator)
    text = torch.randn(batch, 20, reference.config.text_dim, generator=generator)
    timestep = torch.tensor([937] * batch) if timestep is None else timestep
    kwargs = {"indices_hidden_states": torch.arange(20, 29)[None]}
    if history:
        kwargs.update(history_inputs(batch, *history_size, generator=generator))
    kwargs.update(extra)
    with torch.no_grad():
        expected = reference(hidden, timestep, text, **kwargs).sample
        got = ours(hidden, timestep, text, **kwargs)
    return got, expected


@pytest.fixture(scope="module")
def models(tiny_reference_dir):
    from diffusers import HeliosTransformer3DModel

    reference = with_own_storage(HeliosTransformer3DModel.from_pretrained(tiny_reference_dir).eval())
    ours = HeliosTransformer.from_pretrained(tiny_reference_dir, dtype=torch.float32)
    return reference, ours


@pytest.mark.parametrize("size", [(6, 10), (12, 20), (24, 40)], ids=["stage0", "stage1", "stage2"])
def test_pyramid_stage_sizes_match(models, size):
    got, expected = run_both(*models, size=size)
    assert got.shape == expected.shape == (1, 16, 9, *size)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_batch_with_different_timesteps_and_per_sample_indices(models):
    per_sample = {
        "indices_hidden_states": torch.stack([torch.arange(20, 29), torch.arange(3, 12)]),
        "indices_latents_history_short": torch.tensor([[0, 19], [0, 2]]),
        "indices_latents_history_mid": torch.tensor([[17, 18], [1, 2]]),
        "indices_latents_history_long": torch.stack([torch.arange(1, 17), torch.arange(-15, 1)]),
    }
    reference, ours = models
    generator = torch.Generator().manual_seed(2)
    history = history_inputs(2, 24, 40, generator=generator)
    history.update(per_sample)
    got, expected = run_both(reference, ours, batch=2, timestep=torch.tensor([999, 17]), history=False, **history)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE
    # The two samples really differ, so per-sample timesteps were used.
    assert (got[0] - got[1]).abs().max().item() > 1e-3


def test_history_grid_not_divisible_by_mid_and_long_kernels(models):
    # 10×14 latents: mid pads to 12×16, long to 16×16; 6 long frames pad to 8.
    got, expected = run_both(*models, size=(10, 14), history_size=(10, 14), **history_inputs(1, 10, 14, long_frames=6))
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_without_history(models):
    got, expected = run_both(*models, history=False)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_short_history_only(models):
    generator = torch.Generator().manual_seed(5)
    short = {
        "indices_latents_history_short": torch.tensor([[0, 19]]),
        "latents_history_short": torch.randn(1, 16, 2, 12, 20, generator=generator),
    }
    got, expected = run_both(*models, history=False, **short)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_float_timesteps_and_default_indices(models):
    reference, ours = models
    hidden = torch.randn(1, 16, 3, 4, 4)
    text = torch.randn(1, 7, 32)
    with torch.no_grad():
        expected = reference(hidden, torch.tensor([512.75]), text).sample
        got = ours(hidden, torch.tensor([512.75]), text)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


@pytest.mark.parametrize(
    "change",
    [
        {"is_amplify_history": True},
        {"is_amplify_history": True, "history_scale_mode": "scalar"},
        {"zero_history_timestep": False},
        {"guidance_cross_attn": False},
        {"cross_attn_norm": False},
    ],
    ids=["amplify-per-head", "amplify-scalar", "history-at-t", "cross-attn-all-tokens", "no-cross-attn-norm"],
)
def test_config_switches_match(tmp_path, change):
    from diffusers import HeliosTransformer3DModel

    config = dataclasses.replace(TINY, **change)
    build_reference(config, seed=3).save_pretrained(tmp_path)
    reference = HeliosTransformer3DModel.from_pretrained(tmp_path).eval()
    ours = HeliosTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    got, expected = run_both(reference, ours, size=(12, 20))
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_amplification_changes_the_output(tmp_path):
    """Guard against the switch being silently inert: scaling history keys must change the result."""
    config = dataclasses.replace(TINY, is_amplify_history=True)
    build_reference(config, seed=3).save_pretrained(tmp_path)
    ours = HeliosTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    hidden, text = torch.randn(1, 16, 9, 12, 20), torch.randn(1, 5, 32)
    kwargs = history_inputs(1, 24, 40)
    with torch.no_grad():
        amplified = ours(hidden, torch.tensor([500]), text, **kwargs)
        for block in ours.blocks:
            block.attn1.history_key_scale.fill_(-1e4)  # factor → 1: no amplification
        plain = ours(hidden, torch.tensor([500]), text, **kwargs)
    assert (amplified - plain).abs().max().item() > 1e-3


def test_reverse_round_trip_ours_saved_loaded_by_diffusers(models, tmp_path):
    from diffusers import HeliosTransformer3DModel

    _, ours = models
    ours.save_pretrained(tmp_path)
    reloaded = with_own_storage(HeliosTransformer3DModel.from_pretrained(tmp_path).eval())
    got, expected = run_both(reloaded, ours, size=(12, 20))
    assert (got - expected).abs().max().item() == 0.0


def test_sharded_save_loads_in_both(models, tmp_path):
    from diffusers import HeliosTransformer3DModel

    _, ours = models
    ours.save_pretrained(tmp_path, max_shard_bytes=64 * 1024)
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    reference = HeliosTransformer3DModel.from_pretrained(tmp_path).eval()
    again = HeliosTransformer.from_pretrained(tmp_path, dtype=torch.float32)
    got, expected = run_both(reference, again)
    assert (got - expected).abs().max().item() < FP32_TOLERANCE


def test_bf16_matches_diffusers_bf16(tiny_reference_dir):
    """bf16 with the released precision policy.

    Bound: both models run the same operations in the same precisions (fp32 norms, modulation and
    residuals; bf16 matmuls), so they may differ only by rounding-order effects, which must be far
    below the bf16 quantisation error itself. We require ours-vs-diffusers (both bf16) to be at most
    a tenth of diffusers' own bf16-vs-fp32 error, and below 1e-3 in relative L2.
    """
    from diffusers import HeliosTransformer3DModel

    ref32 = HeliosTransformer3DModel.from_pretrained(tiny_reference_dir).eval()
    ref16 = HeliosTransformer3DModel.from_pretrained(tiny_reference_dir, torch_dtype=torch.bfloat16).eval()
    ours16 = HeliosTransformer.from_pretrained(tiny_reference_dir, dtype=torch.bfloat16)
    fp32_params = {n for n, p in ours16.named_parameters() if p.dtype == torch.float32}
    assert fp32_params == {n for n, p in ref16.named_parameters() if p.dtype == torch.float32}

    generator = torch.Generator().manual_seed(11)
    hidden = torch.randn(1, 16, 9, 12, 20, generator=generator)
    text = torch.randn(1, 20, 32, generator=generator)
    kwargs = {"indices_hidden_states": torch.arange(20, 29)[None], **history_inputs(1, 24, 40, generator=generator)}
    bf16 = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in kwargs.items()}
    t = torch.tensor([743])
    with torch.no_grad():
        exact = ref32(hidden, t, text, **kwargs).sample
        reference = ref16(hidden.bfloat16(), t, text.bfloat16(), **bf16).sample
        got = ours16(hidden.bfloat16(), t, text.bfloat16(), **bf16)
    assert got.dtype == torch.bfloat16
    quantisation_error = relative_l2(reference, exact)
    assert quantisation_error > 0
    difference = relative_l2(got, reference)
    assert difference <= min(1e-3, 0.1 * quantisation_error)


def test_14b_preset_on_meta_has_diffusers_names_and_shapes():
    from diffusers import HeliosTransformer3DModel

    with torch.device("meta"):
        ours = HeliosTransformer.from_config(HELIOS_14B)
        reference = HeliosTransformer3DModel()
    ours_shapes = {n: tuple(p.shape) for n, p in ours.named_parameters()}
    reference_shapes = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    assert ours_shapes == reference_shapes
    assert len(ours_shapes) == 1101
    assert sum(p.numel() for p in ours.parameters()) == 14_312_427_584
    assert all(p.is_meta for p in ours.parameters())


def test_from_config_accepts_a_diffusers_config_dict(models):
    reference, _ = models
    model = HeliosTransformer.from_config(dict(reference.config))
    assert model.config == TINY
