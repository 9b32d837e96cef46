"""Do world models draw continuous motion? Frame-to-frame steps of an object's centroid in one-object clips.

For held-out one-object prompts (one chunk each, seed = the prompt's index), the centroid of the prompted
colour is tracked frame by frame; a step longer than JUMP_PX pixels is a jump (the world's quickest object
moves 2.8 px a frame). Steps are also split by their place in the codec's 4-frame latent groups (step
j → j + 1 with j mod 4 = 0 crosses into a new group: frame 0 is a group of its own, then 1–4, 5–8, …).
Calibration: ground truth (no jump) and ground truth through each model's codec; the control that must
fail: ground truth with its frames shuffled.

python benchmarks/world_track_steps.py --models default-mid /path/to/model --prompts 8 --out steps.json
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from helios import HeliosPipeline
from helios.synthetic.evaluate import held_out_scenes, through_codec
from helios.synthetic.judge import centroid
from helios.synthetic.world import CHUNK_FRAMES, SPEEDS, WIDTH, render

JUMP_PX = 6.0


def track_steps(frames: np.ndarray, color: str) -> list[float]:
    """Centroid step lengths (pixels) between consecutive frames; NaN where the object is not seen."""
    centres = [centroid(frame, color) for frame in frames]
    return [
        float(np.hypot(b[0] - a[0], b[1] - a[1])) if a is not None and b is not None else float("nan")
        for a, b in zip(centres[:-1], centres[1:])
    ]


def summary(steps: list[list[float]]) -> dict:
    values = np.array(steps)  # (clips, frames − 1)
    seen = values[~np.isnan(values)]
    jumps_by_place = [values[:, j::4][~np.isnan(values[:, j::4])] > JUMP_PX for j in range(4)]
    return {
        "jump_share": float(np.mean(seen > JUMP_PX)),
        "median_step_px": float(np.median(seen)),
        "p95_step_px": float(np.percentile(seen, 95)),
        "unseen_steps": int(np.isnan(values).sum()),
        "jump_share_by_place_in_group": [round(float(j.mean()), 4) for j in jumps_by_place],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default-mid"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--out", default="world_track_steps.json")
    args = parser.parse_args()
    scenes = [s for s in held_out_scenes(10 * args.prompts) if len(s.objects) == 1][: args.prompts]
    rng = np.random.default_rng(0)
    results = {"quickest_px_per_frame": SPEEDS["quickly"] * WIDTH, "jump_px": JUMP_PX, "machine": platform.node()}
    truths = [render(scene, CHUNK_FRAMES) for scene in scenes]
    colors = [scene.objects[0].color for scene in scenes]
    results["ground_truth"] = summary([track_steps(t, c) for t, c in zip(truths, colors)])
    results["shuffled_ground_truth_control"] = summary(
        [track_steps(t[rng.permutation(len(t))], c) for t, c in zip(truths, colors)]
    )
    for name in args.models:
        pipeline = HeliosPipeline.from_pretrained(name)
        results[f"{name} codec"] = summary(
            [track_steps(through_codec(pipeline.codec, t), c) for t, c in zip(truths, colors)]
        )
        clips = [pipeline.generate(s.caption(), num_frames=CHUNK_FRAMES, seed=i).frames for i, s in enumerate(scenes)]
        results[name] = summary([track_steps(clip, c) for clip, c in zip(clips, colors)])
    print(f"{'clips':44s} {'jumps':>6s} {'median':>7s} {'p95':>6s}  jumps by place in the latent group")
    for key, row in results.items():
        if isinstance(row, dict):
            places = " ".join(f"{100 * v:5.1f}" for v in row["jump_share_by_place_in_group"])
            print(
                f"{key[-44:]:44s} {100 * row['jump_share']:5.1f}% {row['median_step_px']:6.2f}px "
                f"{row['p95_step_px']:5.1f}  {places}"
            )
    with open(args.out, "w") as handle:
        json.dump({"prompts": len(scenes), **results}, handle, indent=1)


if __name__ == "__main__":
    main()
