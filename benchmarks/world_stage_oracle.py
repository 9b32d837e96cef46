"""Which pyramid stage loses the path? Sampling with the true coarse latent put in at a stage's end.

The world models' objects wander and ignore the direction word (`world_track_steps.py`). This benchmark asks
where the path is decided and whether the finer stages keep a path they are given. For held-out one-object
prompts (one chunk each, seed = the prompt's index) the model samples as usual, except that at the end of
pyramid stage k the latents are replaced by what training shows there: the ground-truth clip's latent,
downsampled to that stage's size, noised to the stage's end σ — (1 − σ)·clean_k + σ·ε with fresh unit noise
ε. The stages after k then run unchanged. Rows:

* ``sampled``: no replacement (what users get);
* ``oracle after stage k``: the true clip's coarse latent;
* ``reversed oracle after stage k`` (the control): the coarse latent of the same scene mirrored along its
  motion axis, so the object moves the opposite way from the prompt. If the later stages carry the coarse
  path, this row's cosine to the prompted direction goes to −1; if they re-decide the path, both oracle rows
  read alike.
* ``motionless oracle after stage 0``: the true coarse latent with its motion taken out (every latent frame
  replaced by the chunk's mean: a still smear over the path). Do the finer stages add the prompted motion
  when the coarse stage gives none? Training never shows them such an input: there the coarse latent always
  holds the true path.

Per row: the cosine between the tracked object's net displacement and the prompted direction (chance 0,
ground truth +1), straightness (net ÷ path; truth 1) and the net displacement in pixels.

python benchmarks/world_stage_oracle.py --model default-mid --prompts 16 --out oracle.json
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace

import numpy as np
import torch

from helios import HeliosPipeline
from helios.sampling.pyramid import downsample, downsample_noise
from helios.sampling.schedules import PyramidConstants
from helios.synthetic.evaluate import encoded_chunks, held_out_scenes
from helios.synthetic.judge import reversed_direction, track, track_path
from helios.synthetic.world import CHUNK_FRAMES, DIRECTIONS, Scene, render
from helios.training.objectives import motionless


def reversed_motion(scene: Scene) -> Scene:
    """The scene's one object moving the other way, its start mirrored along that axis (so it again starts
    away from the wall it moves toward)."""
    obj = scene.objects[0]
    dx, _ = DIRECTIONS[obj.direction]
    start = {"x": 1 - obj.x} if dx else {"y": 1 - obj.y}
    return replace(scene, objects=(replace(obj, direction=reversed_direction(obj.direction), **start),))


def stage_end_replacement(pipeline, clean: torch.Tensor, stage: int, seed: int):
    """A ``callback_on_step_end`` that swaps the latents after the last step of ``stage`` for the clean
    latent at that stage's size, noised to the stage's end σ as training draws it."""
    steps = pipeline.sampler.pyramid_steps
    constants = PyramidConstants(stages=len(steps))
    last_step = sum(steps[: stage + 1]) - 1
    coarse = clean
    for _ in range(constants.stages - 1 - stage):
        coarse = downsample(coarse)
    generator = torch.Generator().manual_seed(10_000 + seed)
    noise = downsample_noise(torch.randn(clean.shape, generator=generator), constants.stages - stage).to(clean.device)
    sigma = constants.end_sigmas[stage]
    replacement = (1 - sigma) * coarse + sigma * noise

    def callback(_pipeline, step, _timestep, tensors):
        if step != last_step:
            return None
        return {"latents": replacement.to(tensors["latents"].dtype)}

    return callback


def path_summary(paths: list[dict | None]) -> dict:
    found = [p for p in paths if p is not None]
    if not found:
        return {"tracked": 0}
    return {
        "tracked": len(found),
        "mean_cosine": float(np.mean([p["cosine"] for p in found])),
        "median_straightness": float(np.median([p["straightness"] for p in found])),
        "median_net_px": float(np.median([p["net_px"] for p in found])),
    }


def replacements(pipeline, scene: Scene, kinds: list[str]) -> dict:
    """Row name → the coarse latent put in and the stage it ends, for the chosen kinds of row."""
    truth = encoded_chunks(pipeline, scene)
    reverse = encoded_chunks(pipeline, reversed_motion(scene)) if "reversed" in kinds else None
    chosen = {}
    for stage in range(len(pipeline.sampler.pyramid_steps) - 1):
        if "oracle" in kinds:
            chosen[f"oracle after stage {stage}"] = (truth, stage)
        if "reversed" in kinds:
            chosen[f"reversed oracle after stage {stage}"] = (reverse, stage)
    if "motionless" in kinds:
        chosen["motionless oracle after stage 0"] = (motionless(truth), 0)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default-mid")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument(
        "--rows", nargs="+", default=["oracle", "reversed", "motionless"], choices=["oracle", "reversed", "motionless"]
    )
    parser.add_argument("--out", default="world_stage_oracle.json")
    args = parser.parse_args()
    pipeline = HeliosPipeline.from_pretrained(args.model)
    if not pipeline.sampler.pyramid_steps:
        raise SystemExit(f"{args.model} samples at one resolution; this benchmark needs a pyramid sampler")
    scenes = [s for s in held_out_scenes(10 * args.prompts) if len(s.objects) == 1][: args.prompts]
    rows: dict[str, list] = {}
    for i, scene in enumerate(scenes):
        obj = scene.objects[0]

        def judged(frames: np.ndarray, name: str) -> None:
            rows.setdefault(name, []).append(track_path(track(frames, obj.color), obj.direction))  # noqa: B023

        judged(render(scene, CHUNK_FRAMES), "ground truth")
        judged(pipeline.generate(scene.caption(), num_frames=CHUNK_FRAMES, seed=i).frames, "sampled")
        for name, (clean, stage) in replacements(pipeline, scene, args.rows).items():
            callback = stage_end_replacement(pipeline, clean, stage, seed=i)
            video = pipeline.generate(scene.caption(), num_frames=CHUNK_FRAMES, seed=i, callback_on_step_end=callback)
            judged(video.frames, name)
        print(f"scene {i + 1}/{len(scenes)}", flush=True)
    results = {
        "model": args.model,
        "prompts": len(scenes),
        "chance_cosine": 0.0,
        "machine": platform.node(),
        "rows": {name: path_summary(paths) for name, paths in rows.items()},
    }
    print(f"{'row':34s} {'tracked':>7s} {'cosine':>7s} {'straight':>8s} {'net px':>7s}")
    for name, row in results["rows"].items():
        if row["tracked"]:
            print(
                f"{name:34s} {row['tracked']:7d} {row['mean_cosine']:+7.2f} {row['median_straightness']:8.2f} "
                f"{row['median_net_px']:7.1f}"
            )
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
