"""``HistoryDropSettings.still_image`` (ours): training samples with I2V's history of a still image of the
chunk's first frame, as inference builds it — the one place where only the caption tells the path."""

from __future__ import annotations

import pytest
import torch

from helios.config import HistoryDropSettings
from helios.media import read_video, to_model_pixels
from helios.training.corruption import still_image_history
from helios.training.data import LatentShards
from helios.training.trainer import Trainer

from .conftest import offloaded_world, train_config


@pytest.fixture(scope="module")
def held_shards(tmp_path_factory):
    return offloaded_world(tmp_path_factory.mktemp("held"), count=2, seed=3, held=True)


def test_offload_stores_what_i2v_puts_in_the_newest_history_slot(held_shards):
    shards, codec, manifest = held_shards
    latents, _, held = LatentShards(shards).load(0)
    assert held.shape == (2, *latents.shape[1:2], 1, *latents.shape[3:])
    frames, _ = read_video(manifest.parent / "videos" / "000000.mp4")
    second = to_model_pixels(frames[33:34], 64, 64)  # the second chunk's first frame, held for a chunk
    expected = codec.encode(second.repeat(1, 1, 33, 1, 1))[0, :, -1:]
    assert torch.allclose(held[1], expected.half().float(), atol=1e-6)
    # The world codec encodes a first frame as a group of four copies of it, so here the held image is the
    # chunk's own first latent (a causal codec such as the Wan VAE gives another latent; hence the field).
    assert torch.allclose(held[1], latents[1, :, :1], atol=1e-3)


def test_chosen_samples_get_the_still_image_history_and_the_rest_are_untouched():
    generator = torch.Generator().manual_seed(0)
    history, target = torch.randn(6, 4, 19, 2, 2, generator=generator), torch.randn(6, 4, 9, 2, 2, generator=generator)
    anchor, held = torch.randn(6, 4, 1, 2, 2, generator=generator), torch.randn(6, 4, 1, 2, 2, generator=generator)
    all_, all_anchor = still_image_history(history, anchor, target, held, 1.0, torch.Generator().manual_seed(1))
    assert all_[:, :, :-1].abs().sum() == 0 and torch.equal(all_[:, :, -1:], held)
    assert torch.equal(all_anchor, target[:, :, :1])
    none, none_anchor = still_image_history(history, anchor, target, held, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(none, history) and torch.equal(none_anchor, anchor)
    half, _ = still_image_history(history, anchor, target, held, 0.5, torch.Generator().manual_seed(1))
    chosen = [torch.equal(half[i, :, -1:], held[i]) for i in range(6)]
    assert 0 < sum(chosen) < 6


def test_training_with_still_images_and_a_clear_error_without_held_frames(held_shards, world_shards, tmp_path):
    drop = HistoryDropSettings(still_image=0.5)
    record = Trainer(train_config(held_shards[0], tmp_path / "held", stage=2, max_steps=2, history_drop=drop)).train()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in record)
    with pytest.raises(ValueError, match="still_image needs shards with held first frames"):
        Trainer(train_config(world_shards[0], tmp_path / "plain", stage=2, max_steps=1, history_drop=drop)).train()
    with pytest.raises(ValueError, match="history drop still_image must lie in"):
        HistoryDropSettings(still_image=1.5)
