"""Re-patching a trained transformer to spatial tokens half as wide (model/repatch.py, the recipe's --repatch)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import helios.model.rope as rope
from helios import HeliosTransformer
from helios.config import TINY, SamplerSettings, ShiftSettings, TransformerConfig
from helios.model.repatch import repatch_state, repatched_config
from helios.sampling.chunk import pyramid_schedules
from helios.sampling.schedules import PyramidConstants

from ..conftest import history_inputs


def _upsampled(x: torch.Tensor) -> torch.Tensor:
    """A picture constant over every 2 × 2 block: what a 2 × 2 patch and four 1 × 1 patches see alike."""
    return x.repeat_interleave(2, -1).repeat_interleave(2, -2)


def _models() -> tuple[HeliosTransformer, HeliosTransformer]:
    torch.manual_seed(0)
    old = HeliosTransformer.from_config(TINY).eval()
    state, config = repatch_state(old.state_dict(), old.config, 2)
    new = HeliosTransformer.from_config(config).eval()
    new.load_state_dict(state)  # strict: every key and shape of the re-patched model
    return old, new


@torch.no_grad()
def test_the_folded_weights_reproduce_the_trained_model_exactly(monkeypatch):
    """With positions that cannot tell a patch's four new tokens apart, attention over the four copies is
    attention over the old token: the re-patched model's output is the old output averaged over each
    patch, to float precision, at every pyramid size. (With history it is close, not exact: the mid and
    long history tokens become finer too, each covering a quarter of the area it covered.)"""
    real = rope._grid_positions
    monkeypatch.setattr(
        rope, "_grid_positions", lambda size, spacing, device, scale=1.0: real(size, 1, device).mul(scale).floor()
    )
    old, new = _models()
    generator = torch.Generator().manual_seed(1)
    text = torch.randn(1, 5, 32, generator=generator)
    for size in (4, 2):
        hidden = _upsampled(torch.randn(1, 16, 2, size, size, generator=generator))
        before = old(hidden, torch.tensor([700]), text)
        after = new(hidden, torch.tensor([700]), text)
        averaged = _upsampled(before.unflatten(3, (size, 2)).unflatten(5, (size, 2)).mean(dim=(4, 6)))
        assert torch.allclose(after, averaged, atol=1e-5), size


@torch.no_grad()
def test_scaled_positions_keep_new_tokens_where_their_old_patch_was():
    old, new = _models()
    assert new.config.patch_size == (1, 1, 1) and new.config.rope_spatial_scale == 0.5
    indices = torch.tensor([[20, 21]])
    coarse = old.rope_cache.table(indices, 3, 4, torch.device("cpu"))
    fine = new.rope_cache.table(indices, 6, 8, torch.device("cpu"))
    # fine token (2i, 2j) sits at (i, j), the position of old token (i, j)
    even = fine.cos.reshape(2, 6, 8, -1)[:, ::2, ::2].reshape(1, -1, fine.cos.shape[-1])
    assert torch.allclose(even, coarse.cos, atol=1e-6)


@torch.no_grad()
def test_with_real_positions_the_re_patched_mid_starts_near_the_trained_one():
    """The shipped re-patching (positions scaled, not floored) of the embedded Mid moves its output, by
    clearly less than a control that re-patches the weights but keeps the old positions."""
    from helios.generation.loading import model_folder

    old = HeliosTransformer.from_pretrained(model_folder("default-mid") / "transformer", dtype=torch.float32).eval()
    state, config = repatch_state(old.state_dict(), old.config, 2)
    models = {}
    for name, scale in (("scaled", config.rope_spatial_scale), ("control", 1.0)):
        models[name] = HeliosTransformer.from_config(dataclasses.replace(config, rope_spatial_scale=scale)).eval()
        models[name].load_state_dict(state)
    generator = torch.Generator().manual_seed(3)
    hidden = _upsampled(torch.randn(1, 16, 3, 8, 12, generator=generator))
    text = torch.randn(1, 12, 64, generator=generator)
    history = history_inputs(1, 16, 24, long_frames=4, generator=generator)
    for call in ({}, history):
        before = old(hidden, torch.tensor([500]), text, **call)
        target = _upsampled(before.unflatten(3, (8, 2)).unflatten(5, (12, 2)).mean(dim=(4, 6)))
        error = {
            name: ((m(hidden, torch.tensor([500]), text, **call) - target).norm() / target.norm()).item()
            for name, m in models.items()
        }
        assert error["scaled"] < 0.8 * error["control"], error


def test_impossible_factors_and_the_config_round_trip():
    with pytest.raises(ValueError, match="cannot re-patch the spatial patch 2×2 by a factor of 3"):
        repatched_config(TINY, 3)
    with pytest.raises(ValueError, match="rope_spatial_scale = 0.0 is not a valid float"):
        dataclasses.replace(TINY, rope_spatial_scale=0.0)
    config = repatched_config(TINY, 2)
    written = config.to_dict()
    assert written["rope_spatial_scale"] == 0.5 and "rope_spatial_scale" not in TINY.to_dict()
    assert TransformerConfig.from_dict(written) == config
    with pytest.raises(ValueError, match="diffusers' Helios transformer has no rope_spatial_scale"):
        config.diffusers_kwargs()
    assert "rope_spatial_scale" not in TINY.diffusers_kwargs()


def test_the_re_patched_sampler_walks_the_same_sigmas():
    """A chunk has four times the tokens after re-patching; the sampler's token scale grows with them, so
    the dynamic shift, and every stage's σ table, is what the model was trained and judged with."""
    from helios.recipes.default_model import DEFAULT_SAMPLER, repatched_sampler

    sampler = repatched_sampler(DEFAULT_SAMPLER, 2)
    assert sampler.shift.base_seq_len == 4 * DEFAULT_SAMPLER.shift.base_seq_len
    shape = (1, 16, 9, 16, 24)
    for first_chunk in (True, False):
        before = pyramid_schedules(DEFAULT_SAMPLER, PyramidConstants(), shape, (1, 2, 2), first_chunk)
        after = pyramid_schedules(sampler, PyramidConstants(), shape, (1, 1, 1), first_chunk)
        assert all(torch.equal(a.sigmas, b.sigmas) for a, b in zip(before, after))
        unscaled = pyramid_schedules(DEFAULT_SAMPLER, PyramidConstants(), shape, (1, 1, 1), first_chunk)
        assert not torch.equal(unscaled[-1].sigmas, before[-1].sigmas)  # the control: the shift does move
    unshifted = SamplerSettings("plain", shift=ShiftSettings(None))
    assert repatched_sampler(unshifted, 2) == unshifted


def test_the_recipe_re_patches_the_shipped_mid(tmp_path):
    from helios.generation.loading import model_folder
    from helios.recipes.default_model import refine_start

    start = refine_start(model_folder("default-mid") / "transformer", tmp_path / "start", repatch=2)
    model = HeliosTransformer.from_pretrained(start, dtype=torch.float32)
    assert model.config.patch_size == (1, 1, 1) and model.config.rope_spatial_scale == 0.5
    assert model.patch_embedding.weight.shape[-2:] == (1, 1) and model.patch_mid.weight.shape[-3:] == (2, 2, 2)
