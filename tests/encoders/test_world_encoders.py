"""The world's codec and text encoder as encoders: folders through the strict checkpoint code, the
vocabulary read from the model folder."""

from __future__ import annotations

import json

import pytest
import torch

from helios import HeliosPipeline
from helios.encoders.world_codec import WorldCodec
from helios.encoders.world_text import WorldTextEncoder
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.model.checkpoint import CheckpointError
from helios.synthetic.world import vocabulary


def test_codec_folder_round_trip_with_fp16_weights_and_exact_statistics(tmp_path):
    torch.manual_seed(0)
    codec = WorldCodec(channels=(8, 8, 8))
    with torch.no_grad():
        codec.latent_mean.copy_(torch.randn(16) / 3)
        codec.latent_std.copy_(torch.rand(16) + 0.5)
    codec.cast(torch.float16).save_pretrained(tmp_path / "codec")
    assert codec.encoder[0].weight.dtype == torch.float16 and codec.latent_mean.dtype == torch.float32
    loaded = WorldCodec.from_pretrained(tmp_path / "codec")
    assert loaded.encoder[0].weight.dtype == torch.float32  # loaded back as fp32 by default
    assert torch.equal(loaded.latent_mean, codec.latent_mean) and torch.equal(loaded.latent_std, codec.latent_std)
    assert torch.equal(loaded.decoder[0].weight, codec.decoder[0].weight.float())
    assert json.loads((tmp_path / "codec" / "config.json").read_text()) == {
        "latent_channels": 16,
        "channels": [8, 8, 8],
    }


def test_codec_folder_problems_are_clear_errors(tmp_path):
    WorldCodec(channels=(8, 8, 8)).save_pretrained(tmp_path / "codec")
    config = tmp_path / "codec" / "config.json"
    config.write_text(json.dumps({"latent_channels": 16, "channels": [8, 8, 16]}))
    with pytest.raises(CheckpointError, match="wrongly shaped keys"):
        WorldCodec.from_pretrained(tmp_path / "codec")
    config.write_text(json.dumps({"latent_channels": 16, "channels": "wide"}))
    with pytest.raises(CheckpointError, match="channels must be three positive integers"):
        WorldCodec.from_pretrained(tmp_path / "codec")
    config.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        WorldCodec.from_pretrained(tmp_path / "codec")
    config.write_text(json.dumps({"latent_channels": 16, "channels": [8, 8, 8]}))
    weights = tmp_path / "codec" / "codec.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="codec.safetensors"):
        WorldCodec.from_pretrained(tmp_path / "codec")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no world codec in"):
        WorldCodec.from_pretrained(tmp_path / "empty")


def test_text_encoder_vocabulary_comes_from_the_model_folder():
    stored = json.loads((DEFAULT_MODEL_DIR / "text_encoder.json").read_text())
    assert stored["vocabulary"] == vocabulary()
    encoder = HeliosPipeline.from_pretrained(device="cpu").text_encoder
    assert encoder.vocabulary == stored["vocabulary"]
    # Another vocabulary gives other embeddings: the words are read from the folder, not the world module.
    other = WorldTextEncoder(list(reversed(stored["vocabulary"])))
    assert not torch.equal(other.encode(["a red circle"]), encoder.encode(["a red circle"]))
    with pytest.raises(ValueError, match="distinct, non-empty words"):
        WorldTextEncoder(["red", "red"])
