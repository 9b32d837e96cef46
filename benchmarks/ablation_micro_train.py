"""Micro-scale Table-5 ablation on CPU: full vs no First-Frame Anchor vs no Frame-Aware Corrupt.

Usage: python benchmarks/ablation_micro_train.py WORK_DIR MINUTES_PER_MODEL
"""

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from helios.config import CorruptionSettings, HistorySettings, TrainConfig
from helios.encoders.world_codec import WorldCodec
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.recipes.default_model import render_corpus, train_stage, world_text_encoder
from helios.synthetic.world import Scene
from helios.training.offload import encode_video, write_index, write_shard

torch.set_num_threads(2)
work = Path(sys.argv[1])
H, W = 64, 96
minutes = float(sys.argv[2])
if not (work / "shards" / "index.json").is_file():
    t = time.time()
    videos, scenes = render_corpus(160, seed=1, frames=165, workers=2)

    def shrink(video):  # render at the world's size, then area-downsample to the micro size
        frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
        small = torch.nn.functional.interpolate(frames, size=(H, W), mode="area")
        return small.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()

    small = np.stack([shrink(v) for v in videos])
    codec = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
    text = world_text_encoder()
    (work / "shards").mkdir(exist_ok=True)
    files = []
    for n, (video, scene) in enumerate(zip(small, scenes)):
        caption = Scene.from_dict(scene).caption(0)
        latents, emb = encode_video(video, caption, codec, text, H, W)
        files.append(write_shard(work / "shards", f"{n:06d}.safetensors", latents, emb, caption, f"world:{n}"))
    write_index(work / "shards", files, H, W)
    print("data", time.time() - t, flush=True)
model = dict(
    num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=256, num_layers=4, rope_dim=(12, 10, 10)
)
base = dict(
    stage=1,
    data=str(work / "shards"),
    transformer=model,
    batch_size=8,
    learning_rate=5e-4,
    warmup_steps=50,
    max_steps=100000,
    mixed_precision="no",
    log_every=50,
    checkpoint_every=1000,
    seed=7,
    caption_dropout=0.1,
)
variants = {
    "full": {},
    "no_anchor": {"history": HistorySettings(keep_first_frame=False)},
    "no_corrupt": {"corruption": replace(CorruptionSettings(), clean_prob=1.0)},
}
for name, change in variants.items():
    config = TrainConfig(**{**base, **change, "output_dir": str(work / name)})
    print(name, train_stage(config, minutes, lambda m: None), flush=True)
