"""Evaluate a synthetic-world model with the world's own detector (command: ``recipes/evaluate_world.py``).

* adherence: for held-out scenes (seeds never used in training), generate one chunk from the caption
  and check that every captioned object appears with its colour, shape and direction;
* conditioning: for I2V and V2V, the share of the input's objects still present in the continuation;
* drift: generate a long video and track per-chunk colour statistics and how many objects the
  detector still finds — a model that drifts loses objects or shifts colour over time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .detector import adherence, detect
from .world import Scene, render, sample_scene

HELD_OUT_SEED = 10_000  # training scenes use seeds below 10⁶·2 from other streams; these never occur there


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two videos in [−1, 1]."""
    mse = F.mse_loss(a.float(), b.float()).item() / 4  # [−1, 1] → [0, 1]
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def held_out_scenes(count: int) -> list[Scene]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    return [sample_scene(rng, event_probability=0.0) for _ in range(count)]


def evaluate_adherence(pipeline, scenes: list[Scene], seed: int = 0) -> dict:
    hits = {"color": 0, "shape": 0, "motion": 0, "all": 0}
    ceiling = {"color": 0, "shape": 0, "motion": 0, "all": 0}
    for i, scene in enumerate(scenes):
        video = pipeline.generate(scene.caption(), num_frames=pipeline.chunk_frames, seed=seed + i)
        for table, frames in ((hits, video.frames), (ceiling, render(scene, pipeline.chunk_frames))):
            result = adherence(frames, scene)
            for key, ok in result.items():
                table[key] += ok
            table["all"] += all(result.values())
    n = len(scenes)
    return {
        "prompts": n,
        "model": {k: v / n for k, v in hits.items()},
        "detector_on_ground_truth": {k: v / n for k, v in ceiling.items()},
    }


def evaluate_conditioning(pipeline, scenes: list[Scene], seed: int = 0) -> dict:
    """I2V and V2V: the share of the input's objects (by colour) that the continuation still shows."""
    kept = {"i2v": [], "v2v": []}
    for i, scene in enumerate(scenes):
        clip = render(scene, 66)
        colors = {o.color for o in scene.objects}
        for mode, source in (("i2v", {"image": clip[0]}), ("v2v", {"video": clip})):
            video = pipeline.generate(scene.caption(), num_frames=pipeline.chunk_frames, seed=seed + i, **source)
            found = {d.color for d in detect(video.frames)}
            kept[mode].append(len(colors & found) / len(colors))
    return {mode: float(np.mean(values)) for mode, values in kept.items()} | {"scenes": len(scenes)}


def evaluate_drift(pipeline, scene: Scene, frames: int, seed: int = 0) -> dict:
    chunks = []
    for chunk in pipeline.stream(scene.caption(), num_frames=frames, seed=seed):
        pixels = chunk.frames.reshape(-1, 3).astype(np.float32)
        chunks.append(
            {
                "index": chunk.index,
                "mean_rgb": pixels.mean(0).round(2).tolist(),
                "std_rgb": pixels.std(0).round(2).tolist(),
                "objects": len(detect(chunk.frames)),
            }
        )
    return {
        "caption": scene.caption(),
        "frames": frames,
        **drift_summary(chunks),
        "expected_objects": len(scene.objects),
        "per_chunk": chunks,
    }


def drift_summary(chunks: list[dict]) -> dict:
    """Colour drift between the first and the last quarter of the chunks (the headline: single chunks
    swing with the objects' motion), the first-to-last-chunk shift, and object presence."""
    means = np.array([c["mean_rgb"] for c in chunks])
    presence = [c["objects"] for c in chunks]
    q = max(1, len(chunks) // 4)
    return {
        "chunks": len(chunks),
        "mean_rgb_shift_first_to_last_quarter": float(np.abs(means[-q:].mean(0) - means[:q].mean(0)).mean()),
        "mean_rgb_shift_first_to_last_chunk": float(np.abs(means[-1] - means[0]).mean()),
        "objects_first_quarter": float(np.mean(presence[:q])),
        "objects_last_quarter": float(np.mean(presence[-q:])),
    }
