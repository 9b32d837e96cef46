"""Drift over 1,440 frames for the three models of the Table-5 ablation (same sampler, same scenes).

Usage: python benchmarks/ablation_drift.py WORK_DIR [FRAMES] [HEIGHT WIDTH]
WORK_DIR holds full/, no_anchor/, no_corrupt/ each with export/ (a transformer folder); the micro
models of ablation_micro_train.py are 64×96, those of `recipe.py --phase ablations` 128×192.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from helios import HeliosPipeline, HeliosTransformer
from helios.config import HistorySettings, SamplerSettings, ShiftSettings
from helios.encoders.world_codec import WorldCodec
from helios.encoders.world_text import WorldTextEncoder
from helios.generation.loading import DEFAULT_MODEL_DIR
from helios.synthetic.detector import detect
from helios.synthetic.evaluate import held_out_scenes
from helios.synthetic.world import vocabulary

torch.set_num_threads(2)
work = Path(sys.argv[1])
codec = WorldCodec.from_pretrained(DEFAULT_MODEL_DIR / "codec")
sampler = SamplerSettings(name="micro-base", steps=16, guidance_scale=4.0, shift=ShiftSettings("exponential"))
scenes = held_out_scenes(3)
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 1440
height, width = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (64, 96)
results = {}
for name in ("full", "no_anchor", "no_corrupt"):
    history = HistorySettings(keep_first_frame=name != "no_anchor")
    transformer = HeliosTransformer.from_pretrained(work / name / "export", dtype=torch.float32)
    pipe = HeliosPipeline(
        transformer, WorldTextEncoder(vocabulary()), codec, sampler=sampler, history=history, height=height, width=width
    )
    per_scene = []
    for i, scene in enumerate(scenes):
        stats = []
        for chunk in pipe.stream(scene.caption(), num_frames=frames, seed=i):
            pixels = chunk.frames.reshape(-1, 3).astype(np.float32)
            stats.append((pixels.mean(0), pixels.std(0).mean(), len(detect(chunk.frames))))
        means = np.array([s[0] for s in stats])
        stds = np.array([s[1] for s in stats])
        objects = np.array([s[2] for s in stats])
        q = max(1, len(stats) // 4)
        per_scene.append(
            {
                "color_shift_first_to_last_quarter": float(np.abs(means[-q:].mean(0) - means[:q].mean(0)).mean()),
                "contrast_first_quarter": float(stds[:q].mean()),
                "contrast_last_quarter": float(stds[-q:].mean()),
                "objects_first_quarter": float(objects[:q].mean()),
                "objects_last_quarter": float(objects[-q:].mean()),
            }
        )
    results[name] = {k: float(np.mean([p[k] for p in per_scene])) for k in per_scene[0]}
    print(name, results[name], flush=True)
json.dump(
    {"frames": frames, "scenes": len(scenes), "size": [height, width], "results": results},
    open(work / "drift.json", "w"),
    indent=1,
)
