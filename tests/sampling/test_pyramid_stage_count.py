"""Pyramids of another stage count for the world model: the recipe's --pyramid-ratios / --pyramid-steps
(an experiment: a two-stage pyramid's coarse stage is at half the size, not a quarter)."""

from __future__ import annotations

import dataclasses

import pytest


def test_the_recipe_refuses_a_pyramid_whose_steps_do_not_match_its_stages(tmp_path, monkeypatch, capsys):
    import sys

    from helios.recipes import default_model

    monkeypatch.setattr(
        sys, "argv", ["recipe", "--work", str(tmp_path), "--phase", "package", "--pyramid-ratios", "1", "1"]
    )
    with pytest.raises(SystemExit):
        default_model.main()
    assert "a 2-stage pyramid (--pyramid-ratios) needs --pyramid-steps with 2 values" in capsys.readouterr().err


def test_a_two_stage_pyramid_samples_the_world_model():
    """What a model trained with --pyramid-ratios 1 1 ships with: two stages, the coarse one at half size."""
    from helios import HeliosPipeline

    pipeline = HeliosPipeline.from_pretrained("default-mid")
    pipeline.sampler = dataclasses.replace(pipeline.sampler, pyramid_steps=(1, 1))
    video = pipeline.generate("a large red circle moves right slowly on a black background", num_frames=33, seed=0)
    assert video.frames.shape[0] == 33 and video.latents.shape[-2:] == (16, 24)
