"""The world recipe's Base variant: stage 1 from a packaged model, packaged with the Base sampler."""

from __future__ import annotations

import json
import sys

import torch

from helios import HeliosPipeline
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.recipes import default_model as recipe


def test_base_variant_trains_stage_1_from_a_packaged_model_and_ships_the_base_sampler(tmp_path, monkeypatch):
    work, target = tmp_path / "work", tmp_path / "base"
    arguments = ["--work", str(work), "--videos", "2", "--sections", "2", "--batch-size", "2", "--base-steps", "2"]
    mid_dir = DEFAULT_MODEL_DIR / "mid"  # the default Distilled model's Mid teacher
    arguments += ["--codec-from", str(DEFAULT_MODEL_DIR / "codec"), "--from-model", "default-mid"]  # (by name)
    arguments += ["--phase", "offload", "base", "package-base", "--package-to", str(target)]
    monkeypatch.setattr(sys, "argv", ["default_model", *arguments])
    recipe.main()
    log = [json.loads(line) for line in (work / "base" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2
    state = json.loads((work / "base" / "checkpoints" / "step_0000002" / "state.json").read_text())
    assert state["config"]["stage"] == 1 and state["config"]["transformer"] == str(mid_dir / "transformer")
    base, mid = HeliosPipeline.from_pretrained(target), HeliosPipeline.from_pretrained(mid_dir)
    assert base.sampler.name == "world-base" and base.sampler.pyramid_steps is None
    assert base.sampler.steps == 24 and base.sampler.guidance_scale == mid.sampler.guidance_scale
    assert base.text_encoder.binding == mid.text_encoder.binding  # the captions read as the start model reads them
    # the codec's drift thresholds come with it from the packaged model
    assert (target / "drift.json").read_text() == (DEFAULT_MODEL_DIR / "drift.json").read_text()
    trained, start = base.transformer.state_dict(), mid.transformer.state_dict()
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # (trained: not the start's weights)
