"""``TransformerConfig.pyramid_rope_alignment`` (ours, off in released models): a lower pyramid stage's
noisy tokens get the RoPE positions of their centres on the history's full-resolution grid."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helios import HeliosTransformer
from helios.config import TINY, TransformerConfig
from helios.model.rope import rope_table

from ..conftest import history_inputs


def test_a_spaced_grid_sits_at_the_centres_of_the_finer_grid():
    indices = torch.tensor([[20, 21]])
    dims, theta = TINY.rope_dim, TINY.rope_theta
    assert torch.equal(
        rope_table(indices, 2, 3, dims, theta, spacing=1).cos, rope_table(indices, 2, 3, dims, theta).cos
    )
    spaced = rope_table(indices, 2, 3, dims, theta, spacing=4)
    fine = rope_table(indices, 8, 12, dims, theta)
    # the y/x angles are linear in position: a coarse cell's is the mean of the 4 × 4 fine cells it covers
    half = sum(dims) // 2
    y_and_x = slice(dims[0] // 2, half)
    fine_angles = torch.atan2(fine.sin, fine.cos)[0, :, y_and_x].reshape(2, 8, 12, -1)
    spaced_angles = torch.atan2(spaced.sin, spaced.cos)[0, :, y_and_x].reshape(2, 2, 3, -1)
    # compare on the slowest frequency of each axis, where no angle wraps around
    slow_y, slow_x = dims[1] // 2 - 1, dims[1] // 2 + dims[2] // 2 - 1
    coarse_mean = fine_angles.reshape(2, 2, 4, 3, 4, -1).mean(dim=(2, 4))
    for frequency in (slow_y, slow_x):
        assert torch.allclose(spaced_angles[..., frequency], coarse_mean[..., frequency], atol=1e-5)


def _model(aligned: bool) -> HeliosTransformer:
    torch.manual_seed(0)
    return HeliosTransformer.from_config(dataclasses.replace(TINY, pyramid_rope_alignment=aligned)).eval()


@torch.no_grad()
def test_alignment_changes_only_the_lower_stages():
    history = history_inputs(1, 16, 16, long_frames=4, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(2))
    released, aligned = _model(False), _model(True)
    for size, moved in ((16, False), (8, True), (4, True)):  # full resolution, stage 1, stage 0
        hidden = torch.randn(1, 16, 2, size, size, generator=torch.Generator().manual_seed(size))
        call = dict(timestep=torch.tensor([700]), encoder_hidden_states=text, **history)
        a, b = released(hidden, **call), aligned(hidden, **call)
        assert torch.equal(a, b) != moved, size
        # without history there is no full-resolution grid to align with: the released positions
        assert torch.equal(released(hidden, torch.tensor([700]), text), aligned(hidden, torch.tensor([700]), text))
    with pytest.raises(ValueError, match="one whole factor"):
        aligned(torch.randn(1, 16, 2, 6, 6), torch.tensor([700]), text, **history)


def test_released_configs_are_written_as_released():
    assert "pyramid_rope_alignment" not in TINY.to_dict()  # diffusers does not know the key
    written = dataclasses.replace(TINY, pyramid_rope_alignment=True).to_dict()
    assert written["pyramid_rope_alignment"] is True
    assert TransformerConfig.from_dict(written).pyramid_rope_alignment
    assert not TransformerConfig.from_dict(TINY.to_dict()).pyramid_rope_alignment
    assert "pyramid_rope_alignment" not in TINY.diffusers_kwargs()
    with pytest.raises(ValueError, match="diffusers' Helios transformer has no pyramid_rope_alignment"):
        dataclasses.replace(TINY, pyramid_rope_alignment=True).diffusers_kwargs()


def test_the_recipe_starts_an_aligned_refine_from_the_shipped_weights(tmp_path):
    from helios.generation.loading import DEFAULT_MODEL_DIR
    from helios.recipes.default_model import refine_start

    shipped = DEFAULT_MODEL_DIR / "transformer"
    start = refine_start(shipped, tmp_path / "aligned", aligned=True)
    released, aligned = (HeliosTransformer.from_pretrained(folder, dtype=torch.float32) for folder in (shipped, start))
    assert aligned.config.pyramid_rope_alignment and not released.config.pyramid_rope_alignment
    assert all(torch.equal(a, b) for a, b in zip(released.state_dict().values(), aligned.state_dict().values()))
    assert json_keys(shipped) | {"pyramid_rope_alignment"} == json_keys(start)


def json_keys(folder) -> set:
    import json

    return set(json.loads((folder / "config.json").read_text()))
