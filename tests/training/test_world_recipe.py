"""The world recipe's Base variant: stage 1 from a packaged model (here on a start curriculum), packaged with the
Base sampler."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from helios import HeliosPipeline
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.recipes import default_model as recipe


def test_base_variant_trains_stage_1_from_a_packaged_model_and_ships_the_base_sampler(tmp_path, monkeypatch):
    work, target = tmp_path / "work", tmp_path / "base"
    arguments = ["--work", str(work), "--videos", "2", "--sections", "2", "--batch-size", "2", "--base-steps", "2"]
    mid_dir = DEFAULT_MODEL_DIR / "mid"  # the default Distilled model's Mid teacher
    arguments += ["--codec-from", str(DEFAULT_MODEL_DIR / "codec"), "--from-model", "default-mid"]  # (by name)
    arguments += ["--phase", "offload", "base", "package-base", "--package-to", str(target), "--start-curriculum", "2"]
    monkeypatch.setattr(sys, "argv", ["default_model", *arguments])
    recipe.main()
    log = [json.loads(line) for line in (work / "base" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2
    state = json.loads((work / "base" / "checkpoints" / "step_0000002" / "state.json").read_text())
    assert state["config"]["stage"] == 1 and state["config"]["transformer"] == str(mid_dir / "transformer")
    # a start curriculum: the corpus marked as written in order, the steps reaching all of it
    assert state["config"]["curriculum_steps"] == 2
    assert json.loads((work / "shards" / "index.json").read_text())["ordered_easy_to_hard"]
    base, mid = HeliosPipeline.from_pretrained(target), HeliosPipeline.from_pretrained(mid_dir)
    assert base.sampler.name == "world-base" and base.sampler.pyramid_steps is None
    assert base.sampler.steps == 24 and base.sampler.guidance_scale == mid.sampler.guidance_scale
    assert base.text_encoder.binding == mid.text_encoder.binding  # the captions read as the start model reads them
    # the codec's drift thresholds come with it from the packaged model
    assert (target / "drift.json").read_text() == (DEFAULT_MODEL_DIR / "drift.json").read_text()
    trained, start = base.transformer.state_dict(), mid.transformer.state_dict()
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # (trained: not the start's weights)


def test_a_decoder_fine_tune_keeps_the_encoder_and_weighs_the_group_boundary(tmp_path):
    """``train_codec`` from a trained codec changes only the decoder (every latent stays valid); with a
    boundary weight the change into each latent group's first frame weighs more, and the loss is finite."""
    import numpy as np

    from helios.encoders.world_codec import WorldCodec

    videos = np.stack([recipe.render(recipe.corpus_scene(4, i, 33), 33, 64, 64) for i in range(2)])
    start = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
    encoder = {k: v.clone() for k, v in start.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in start.decoder.state_dict().items()}
    messages = []
    codec, quality = recipe.train_codec(
        videos, videos[:1], 2, "cpu", messages.append, lr=1e-3, batch=1, start=start, boundary_weight=4.0
    )
    assert all(torch.equal(encoder[k], v) for k, v in codec.encoder.state_dict().items())
    assert any(not torch.equal(decoder[k], v) for k, v in codec.decoder.state_dict().items())
    assert np.isfinite(quality) and "codec stopped at step 2" in " ".join(messages)


def test_a_negative_start_curriculum_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["recipe", "--work", str(tmp_path / "w"), "--phase", "offload", "--start-curriculum", "-5"]
    )
    with pytest.raises(SystemExit):
        recipe.main()
    assert "--start-curriculum takes the steps that reach the whole corpus (0: none), got -5" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_previous_frame_decoder_fine_tune_moves_its_new_input_at_its_own_rate():
    """The new input starts at zero; with its learning rate scaled it moves that much further in the same
    steps (the decoder's own weights move as before), and the encoder stays as it was."""
    import numpy as np

    from helios.encoders.world_codec import WorldCodec

    videos = np.stack([recipe.render(recipe.corpus_scene(4, i, 33), 33, 64, 64) for i in range(2)])
    start = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
    moved = {}
    for scale in (1.0, 10.0):
        codec = recipe.with_context_decoder(start, None, previous_frame=True)
        codec, _ = recipe.train_codec(
            videos, videos[:1], 2, "cpu", lambda _: None, lr=1e-3, batch=1, start=codec, previous_frame_lr_scale=scale
        )
        assert all(torch.equal(a, b) for a, b in zip(codec.encoder.parameters(), start.encoder.parameters()))
        moved[scale] = codec.previous_in.weight.abs().max().item()
    assert 0 < moved[1.0] and moved[10.0] == pytest.approx(10 * moved[1.0], rel=0.05)
