"""Do world models draw continuous, straight motion? The track of an object's centroid in one-object clips.

For held-out one-object prompts (one chunk each, seed = the prompt's index), the centroid of the prompted
colour is tracked frame by frame; a step longer than JUMP_PX pixels is a jump (the world's quickest object
moves 2.8 px a frame). Steps are also split by their place in the codec's 4-frame latent groups (step
j → j + 1 with j mod 4 = 0 crosses into a new group: frame 0 is a group of its own, then 1–4, 5–8, …).
The whole track gives its path length, its net displacement (first to last frame seen), its straightness
(net ÷ path: 1 for the world's constant-velocity objects, near 0 for a wandering one) and the cosine between
the net displacement and the prompted direction (chance 0: a direction that ignores the word).
Calibration: ground truth (straight, no jump, cosine 1) and ground truth through each model's codec; the
controls that must fail: ground truth with its frames shuffled (jumps, not straight) and ground truth judged
against the reversed direction (cosine −1).

python benchmarks/world_track_steps.py --models default-mid /path/to/model --prompts 8 --out steps.json
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from helios import HeliosPipeline
from helios.synthetic.evaluate import held_out_scenes, through_codec
from helios.synthetic.judge import reversed_direction, track, track_path
from helios.synthetic.world import CHUNK_FRAMES, SPEEDS, WIDTH, render

JUMP_PX = 6.0


def summary(tracks: list[np.ndarray], directions: list[str]) -> dict:
    values = np.array([np.hypot(*np.diff(t, axis=0).T) for t in tracks])  # step lengths (clips, frames − 1)
    seen = values[~np.isnan(values)]
    jumps_by_place = [values[:, j::4][~np.isnan(values[:, j::4])] > JUMP_PX for j in range(4)]
    paths = [p for p in (track_path(t, d) for t, d in zip(tracks, directions)) if p is not None]

    def median(key: str) -> float:
        return float(np.median([p[key] for p in paths]))

    return {
        "jump_share": float(np.mean(seen > JUMP_PX)),
        "median_step_px": float(np.median(seen)),
        "p95_step_px": float(np.percentile(seen, 95)),
        "unseen_steps": int(np.isnan(values).sum()),
        "jump_share_by_place_in_group": [round(float(j.mean()), 4) for j in jumps_by_place],
        "tracked_clips": len(paths),
        "median_path_px": median("path_px"),
        "median_net_px": median("net_px"),
        "median_straightness": median("straightness"),
        "mean_cosine_to_prompted": float(np.mean([p["cosine"] for p in paths])),
    }


def sampler_options(args: argparse.Namespace) -> dict:
    options = {"guidance_scale": args.guidance_scale, "steps": tuple(args.steps) if args.steps else None}
    return {key: value for key, value in options.items() if value is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default-mid"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--out", default="world_track_steps.json")
    parser.add_argument("--guidance-scale", type=float, help="the models' sampler guidance instead of their own")
    parser.add_argument("--steps", type=int, nargs="+", help="sampling steps per pyramid stage instead of the models'")
    args = parser.parse_args()
    scenes = [s for s in held_out_scenes(10 * args.prompts) if len(s.objects) == 1][: args.prompts]
    rng = np.random.default_rng(0)
    results = {
        "quickest_px_per_frame": SPEEDS["quickly"] * WIDTH,
        "jump_px": JUMP_PX,
        "sampler_options": sampler_options(args),
        "machine": platform.node(),
    }
    truths = [render(scene, CHUNK_FRAMES) for scene in scenes]
    colors = [scene.objects[0].color for scene in scenes]
    directions = [scene.objects[0].direction for scene in scenes]
    truth_tracks = [track(t, c) for t, c in zip(truths, colors)]
    results["ground_truth"] = summary(truth_tracks, directions)
    results["shuffled_ground_truth_control"] = summary(
        [track(t[rng.permutation(len(t))], c) for t, c in zip(truths, colors)], directions
    )
    results["reversed_direction_control"] = summary(truth_tracks, [reversed_direction(d) for d in directions])
    for name in args.models:
        pipeline = HeliosPipeline.from_pretrained(name)
        results[f"{name} codec"] = summary(
            [track(through_codec(pipeline.codec, t), c) for t, c in zip(truths, colors)], directions
        )
        clips = [
            pipeline.generate(s.caption(), num_frames=CHUNK_FRAMES, seed=i, **sampler_options(args)).frames
            for i, s in enumerate(scenes)
        ]
        results[name] = summary([track(clip, c) for clip, c in zip(clips, colors)], directions)
    print(
        f"{'clips':44s} {'jumps':>6s} {'median':>7s} {'p95':>6s}  {'by place in the latent group':28s} "
        f"{'path':>6s} {'net':>6s} {'straight':>8s} {'cosine':>6s}"
    )
    for key, row in results.items():
        if isinstance(row, dict) and "jump_share" in row:
            places = " ".join(f"{100 * v:5.1f}" for v in row["jump_share_by_place_in_group"])
            print(
                f"{key[-44:]:44s} {100 * row['jump_share']:5.1f}% {row['median_step_px']:6.2f}px "
                f"{row['p95_step_px']:5.1f}  {places:28s} {row['median_path_px']:6.1f} {row['median_net_px']:6.1f} "
                f"{row['median_straightness']:8.2f} {row['mean_cosine_to_prompted']:+6.2f}"
            )
    with open(args.out, "w") as handle:
        json.dump({"prompts": len(scenes), **results}, handle, indent=1)


if __name__ == "__main__":
    main()
