"""A tiny offloaded dataset from the synthetic world (64×64, two chunks per video)."""

from __future__ import annotations

import pytest
import torch

from helios.encoders.world_codec import WorldCodec
from helios.encoders.world_text import WorldTextEncoder
from helios.synthetic.world import export_dataset, vocabulary
from helios.training.offload import offload

TINY_WORLD_TRANSFORMER = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    text_dim=64,
    ffn_dim=64,
    num_layers=2,
    rope_dim=(6, 6, 4),
)


def offloaded_world(root, count: int, seed: int, held: bool = False) -> tuple:
    """``count`` world videos of two chunks at 64×64 through an untrained codec: (shards, codec, manifest)."""
    manifest = export_dataset(root / "videos", count=count, num_frames=66, seed=seed, height=64, width=64)
    torch.manual_seed(0)
    codec = WorldCodec().eval()
    text = WorldTextEncoder(vocabulary())
    return offload(manifest, root / "shards", codec, text, height=64, width=64, held=held), codec, manifest


@pytest.fixture(scope="session")
def world_shards(tmp_path_factory):
    return offloaded_world(tmp_path_factory.mktemp("world"), count=4, seed=0)


def train_config(shards, out, **changes):
    from helios.config import TrainConfig

    values = dict(
        data=str(shards),
        output_dir=str(out),
        transformer=TINY_WORLD_TRANSFORMER,
        batch_size=2,
        max_steps=6,
        learning_rate=1e-3,
        log_every=1,
        checkpoint_every=3,
        seed=1,
    )
    values.update(changes)
    return TrainConfig(**values)
