"""Stage 3 on a GPU: bf16 autocast, and the idle model parked in pinned host memory (non-blocking
copies) without changing a single loss. Skipped without CUDA (CI); run with ``python -m pytest tests/gpu``."""

from __future__ import annotations

import math

import pytest
import torch

from helios import HeliosTransformer
from helios.config import DistillSettings, TrainConfig
from helios.training.offload import write_index, write_shard
from helios.training.trainer import Trainer

from ..training.conftest import TINY_WORLD_TRANSFORMER as TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(tmp_path, name: str, park: bool, cache_grad: bool = True) -> tuple[Trainer, list[dict]]:
    data, teacher = tmp_path / "shards", tmp_path / "teacher"
    if not data.exists():
        data.mkdir()
        generator = torch.Generator().manual_seed(0)
        files = [
            write_shard(
                data,
                f"{i:06d}.safetensors",
                torch.randn(2, 16, 9, 8, 8, generator=generator),
                torch.randn(4, 64, generator=generator),
                "a caption",
                f"random:{i}",
            )
            for i in range(3)
        ]
        write_index(data, files, 64, 64)
        torch.manual_seed(0)
        HeliosTransformer.from_config(TINY).save_pretrained(teacher)
    distill = DistillSettings(
        phase="dmd",
        teacher=str(teacher),
        critic_lora_rank=4,
        critic_lora_alpha=4,
        critic_learning_rate=1e-3,
        generator_update_every=1,
        gan_start_step=0,
        gan_head_dim=8,
        offload_idle_models=park,
        cache_gan_grad=cache_grad,
    )
    config = TrainConfig(
        stage=3,
        data=str(data),
        output_dir=str(tmp_path / name),
        transformer=str(teacher),
        distill=distill,
        batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        mixed_precision="bf16",
        checkpoint_every=2,
        seed=1,
    )
    trainer = Trainer(config, device="cuda")
    return trainer, trainer.train()


def test_parking_the_idle_model_changes_no_loss(tmp_path):
    _, plain = _run(tmp_path, "plain", park=False)
    trainer, parked = _run(tmp_path, "parked", park=True)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["gan_d"]) for r in parked)
    assert [r["loss"] for r in parked] == [r["loss"] for r in plain]
    score = list(trainer.distill.score.parameters())
    assert all(p.device.type == "cpu" and p.is_pinned() for p in score)  # parked after the student's turn
    assert all(p.device.type == "cuda" for p in trainer.model.parameters())


def test_parking_without_cache_grad_keeps_the_score_network_for_the_students_backward(tmp_path):
    # the GAN term's graph runs through the score network's checkpointed blocks: parking it before the
    # student's backward put its weights on the host (a device-mismatch crash on the H100, 2026-11-27)
    _, plain = _run(tmp_path, "plain", park=False, cache_grad=False)
    _, parked = _run(tmp_path, "parked", park=True, cache_grad=False)
    assert [r["loss"] for r in parked] == [r["loss"] for r in plain]
