"""Can the world model learn the direction word at all, where it is the only clue? A learnability probe.

The world corpus lets a model ignore "left" / "right" / "up" / "down": a first chunk's start is uniform, so
at high noise every direction predicts the same smear, and below it the noisy chunk already shows the path.
Here every training scene starts at the frame's centre (one object, no events), so the direction word alone
tells where the object goes, at every noise level. A model continued on this corpus must come to read it.

Two arms continue the same model for the same steps on the same scenes and noise: ``captioned`` (true
captions) and ``shuffled`` (the control that must fail: each caption's direction word is drawn at random,
so it says nothing about the path). Each arm is measured before and after on held-out centre-start scenes:
* the word loss (``evaluate_word_loss``): the loss rise, per pyramid stage, when the direction word is
  wrong (0 %: the word is ignored);
* generated clips: the cosine between the tracked object's net displacement and the prompted direction
  (chance 0; ground truth 1).

``--corpus`` picks other training scenes, measured on the same centre-start scenes: ``world``, the world
corpus's own first chunks (one or two objects, each starting on the side away from where it goes, any speed);
``unbiased``, those with every start drawn whatever the direction; ``placed``, one slow object starting anywhere
in the frame's middle half; ``mixed``, half centre, half world. They tell which property of the corpus hides
the word; ``widening``, the placed scenes with their offset from the centre growing with their index, training
drawing from a prefix that reaches all of them over ``--ramp-steps`` (a curriculum); ``world-widening``, the
recipe's ``--start-curriculum`` on the world corpus's first chunks: each scene's starts pulled to the shared
anchors (``world.with_start_spread``) as the recipe's corpus pulls them (``curriculum_spread``: from all the
way at the first scene to not at all from the middle on), the same ramp. Clips and the word rise are
also measured on held-out placed scenes, where a path learned from the centre cannot help; ``--sheet`` writes a
contact sheet of those clips to look at. ``--pyramid-steps 12 12`` trains and samples a two-stage pyramid
(coarsest level 4 x 6 tokens, not 2 x 3).

python benchmarks/world_direction_probe.py --model default-mid --steps 200 400 --out probe.json  # measured at both
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from helios import HeliosPipeline
from helios.model.window import window_frames
from helios.recipes.default_model import curriculum_spread
from helios.sampling.schedules import PyramidConstants
from helios.synthetic.evaluate import corpus_scene, encoded_chunks, evaluate_word_loss
from helios.synthetic.judge import track, track_path
from helios.synthetic.world import (
    BACKGROUNDS,
    CHUNK_FRAMES,
    COLORS,
    DIRECTIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    Scene,
    render,
)
from helios.training.data import curriculum_reach
from helios.training.objectives import pyramid_flow_matching_loss

WORLD_CORPUS_SEED = 4  # the shipped Mid's corpus (recipes/default_model.py --corpus-seed 4)


def centre_scene(rng: np.random.Generator, placed: bool = False, spread: float = 1.0) -> Scene:
    """One slow object starting at the frame's centre (a quick one would reach a wall inside the chunk and
    bounce), every other attribute drawn; no events. ``placed``: starting anywhere in the frame's middle half
    instead (about one in ten, large vertical movers near an edge, then reaches a wall inside the chunk);
    ``spread`` scales that offset from the centre (0: the centre start, 1: the whole middle half)."""
    obj = ObjectSpec(
        shape=str(rng.choice(SHAPES)),
        color=str(rng.choice(list(COLORS))),
        size=str(rng.choice(list(SIZES))),
        direction=str(rng.choice(list(DIRECTIONS))),
        speed="slowly",
        x=0.5 + spread * float(rng.uniform(-0.2, 0.2)) if placed else 0.5,
        y=0.5 + spread * float(rng.uniform(-0.15, 0.15)) if placed else 0.5,
    )
    return Scene(str(rng.choice(list(BACKGROUNDS))), (obj,), ())


def unbiased_start(scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene with each object's start drawn from one range whatever its direction (the world corpus starts an
    object on the side away from where it goes, so there the word also tells where the object is)."""
    objects = [replace(o, x=float(rng.uniform(0.25, 0.75)), y=float(rng.uniform(0.3, 0.7))) for o in scene.objects]
    return replace(scene, objects=tuple(objects))


def training_scene(corpus: str, index: int, rng: np.random.Generator, scenes: int = 1) -> Scene:
    """Scene ``index`` of ``scenes``; ``widening``: placed scenes whose spread grows with the index, from the
    centre start (0) to the middle half (1), so training on a growing prefix is a curriculum; ``world-widening``
    the recipe's start-curriculum corpus: the world's scenes, from the shared anchors to the drawn starts."""
    if corpus == "centre" or (corpus == "mixed" and index % 2):
        return centre_scene(rng)
    if corpus in ("placed", "widening"):
        return centre_scene(rng, placed=True, spread=index / scenes if corpus == "widening" else 1.0)
    if corpus == "world-widening":
        return corpus_scene(WORLD_CORPUS_SEED, index, CHUNK_FRAMES, spread=curriculum_spread(index, scenes))
    scene = corpus_scene(WORLD_CORPUS_SEED, index, CHUNK_FRAMES)
    return unbiased_start(scene, rng) if corpus == "unbiased" else scene


def with_direction(scene: Scene, direction: str) -> Scene:
    return replace(scene, objects=(replace(scene.objects[0], direction=direction), *scene.objects[1:]))


def encode_corpus(pipeline, scenes: list[Scene]) -> torch.Tensor:
    """(N, C, T, h, w) first-chunk latents of the scenes, on the pipeline's device."""
    return torch.cat([encoded_chunks(pipeline, scene) for scene in scenes])


def direction_rise(pipeline, scenes: list[Scene], draws: int) -> dict[str, float]:
    rise = evaluate_word_loss(pipeline, scenes, draws=draws)["relative_rise"]
    return {stage: round(values["direction"], 4) for stage, values in rise.items()}


def word_rises(pipeline, held_out: list[Scene], placed_held_out: list[Scene], draws: int) -> dict:
    """The direction word's loss rise on the centre-start scenes and on the placed ones: a template learned
    from the centre shows only on the first."""
    return {
        "direction_word_rise": direction_rise(pipeline, held_out, draws),
        "direction_word_rise_placed": direction_rise(pipeline, placed_held_out, draws),
    }


SHEET_CLIPS = 4  # clips of each measurement shown in the arm's contact sheet


def contact_rows(clips: list[np.ndarray]) -> np.ndarray:
    """One row per clip: its first, middle and last frame side by side."""
    return np.concatenate([np.concatenate([c[0], c[len(c) // 2], c[-1]], axis=1) for c in clips], axis=0)


def clip_cosines(pipeline, scenes: list[Scene], shown: list | None = None) -> dict:
    """Generated clips (pipeline) or ground truth (None): the tracked motion against the prompted direction.
    ``shown``: the first ``SHEET_CLIPS`` clips are appended to it (to be looked at)."""
    paths = []
    for i, scene in enumerate(scenes):
        obj = scene.objects[0]
        if pipeline is None:
            frames = render(scene, CHUNK_FRAMES)
        else:
            frames = pipeline.generate(scene.caption(), num_frames=CHUNK_FRAMES, seed=i).frames
        paths.append(track_path(track(frames, obj.color), obj.direction))
        if shown is not None and i < SHEET_CLIPS:
            shown.append(frames)
    found = [p for p in paths if p is not None]
    return {
        "clips": len(scenes),
        "tracked": len(found),
        "mean_cosine": float(np.mean([p["cosine"] for p in found])) if found else float("nan"),
        # its standard error over the clips (chance is 0 ± this); a second run of an arm can differ by more
        # (the seventeenth session's two-stage placed arm: +0.32 at 1,200 steps, then −0.10 at 2,000)
        "cosine_se": float(np.std([p["cosine"] for p in found], ddof=1) / np.sqrt(len(found)))
        if len(found) > 1
        else float("nan"),
        "median_net_px": float(np.median([p["net_px"] for p in found])) if found else float("nan"),
    }


def reachable(scenes: int, step: int, args) -> int:
    """How many of the corpus's first scenes a step draws from: all of them, except on the widening corpora,
    where the prefix grows from one batch to all over ``--ramp-steps`` (the trainer's curriculum; the
    seventeenth session's runs rounded the prefix where it now rounds up: at most one scene fewer)."""
    return curriculum_reach(scenes, step, args.ramp_steps, args.batch) if "widening" in args.corpus else scenes


def train(pipeline, latents: torch.Tensor, captions: list[str], steps: int, args, state):
    """Continue stage 2 on first chunks (no history), the recipe's pyramid loss, ``steps`` more steps; returns
    the losses. ``state`` (the optimizer and the generator) carries over between calls."""
    batch = args.batch
    model = pipeline.transformer
    model.train()
    if not state:
        state["optimizer"] = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        state["generator"] = torch.Generator().manual_seed(2)  # a CPU generator, as the loss expects
        state["text"] = pipeline.text_encoder.encode(captions).to(latents.device)
    optimizer, generator, text = state["optimizer"], state["generator"], state["text"]
    constants = PyramidConstants(stages=len(pipeline.sampler.pyramid_steps))
    window = torch.zeros(
        batch, latents.shape[1], window_frames(pipeline.history), *latents.shape[3:], device=latents.device
    )
    losses = []
    for _ in range(steps):
        state["step"] = state.get("step", 0) + 1
        pick = torch.randint(reachable(len(latents), state["step"], args), (batch,), generator=generator)
        pick = pick.to(latents.device)
        loss = pyramid_flow_matching_loss(
            model,
            latents[pick],
            window,
            window[:, :, :1],
            text[pick],
            pipeline.history,
            generator,
            constants,
            sample_ratios=(1,) * constants.stages,
            coarse_motion_dropout=args.coarse_motion_dropout,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default-mid")
    parser.add_argument("--scenes", type=int, default=256, help="training scenes")
    parser.add_argument(
        "--corpus",
        default="centre",
        choices=["centre", "placed", "widening", "world", "world-widening", "unbiased", "mixed"],
        help="training scenes: centre-start ones; like them but starting anywhere in the middle (placed); the "
        "world corpus's first chunks (the Mid's corpus seed); those with every start redrawn regardless of "
        "direction (unbiased); half centre, half world (mixed); placed, from the centre outwards (widening); "
        "world, from the shared anchors outwards (world-widening)",
    )
    parser.add_argument(
        "--ramp-steps",
        type=int,
        default=1000,
        help="widening corpora: steps over which training reaches all the starts",
    )
    parser.add_argument("--held-out", type=int, default=12)
    parser.add_argument("--steps", type=int, nargs="+", default=[200], help="step counts to measure at")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--draws", type=int, default=2, help="word-loss samples per stage and scene")
    parser.add_argument("--arms", nargs="+", default=["captioned", "shuffled"], choices=["captioned", "shuffled"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--coarse-motion-dropout",
        type=float,
        default=0.0,
        help="share of samples whose finer stages start from a motionless coarse level (TrainConfig's option)",
    )
    parser.add_argument(
        "--pyramid-steps",
        type=int,
        nargs="+",
        help="sampling steps per pyramid stage, and so the stages trained and measured (default: the model's "
        "own, 8 8 8; e.g. 12 12: the coarsest level 4 x 6 tokens instead of 2 x 3)",
    )
    parser.add_argument("--out", default="world_direction_probe.json")
    parser.add_argument("--save", help="a folder: each arm's model after its last step is saved under it")
    parser.add_argument(
        "--sheet",
        help="a PNG path prefix: per arm, the first placed held-out clips of every measurement (rows: clips, in "
        "order of measurement; columns: first, middle and last frame), written after each measurement",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    corpus = [training_scene(args.corpus, i, rng, args.scenes) for i in range(args.scenes)]
    held_out = [centre_scene(np.random.default_rng(10_000 + i)) for i in range(args.held_out)]
    # Starts anywhere in the middle half: a model that learned a displacement, not a template, moves these too.
    placed_held_out = [centre_scene(np.random.default_rng(20_000 + i), placed=True) for i in range(args.held_out)]
    results = {"args": vars(args), "machine": platform.node(), "chance_cosine": 0.0, "arms": {}}
    results["ground_truth_clips"] = clip_cosines(None, held_out)
    results["ground_truth_clips_placed"] = clip_cosines(None, placed_held_out)
    results["sheet_captions"] = [s.caption() for s in placed_held_out[:SHEET_CLIPS]]
    for arm in args.arms:
        pipeline = HeliosPipeline.from_pretrained(args.model).to(args.device)
        if args.pyramid_steps:
            pipeline.sampler = replace(pipeline.sampler, pyramid_steps=tuple(args.pyramid_steps))
        latents = encode_corpus(pipeline, corpus)
        shuffle = np.random.default_rng(1)
        scenes = (
            corpus if arm == "captioned" else [with_direction(s, str(shuffle.choice(list(DIRECTIONS)))) for s in corpus]
        )
        measured = {0: word_rises(pipeline, held_out, placed_held_out, args.draws)}
        if not results["arms"]:
            measured[0]["clips"] = clip_cosines(pipeline, held_out)
            measured[0]["clips_placed"] = clip_cosines(pipeline, placed_held_out)
        state, losses, seconds, done, shown = {}, [], 0.0, 0, []
        for target in sorted(args.steps):
            start = time.perf_counter()
            losses += train(pipeline, latents, [s.caption() for s in scenes], target - done, args, state)
            seconds += time.perf_counter() - start
            done = target
            measured[done] = {
                **word_rises(pipeline, held_out, placed_held_out, args.draws),
                "clips": clip_cosines(pipeline, held_out),
                "clips_placed": clip_cosines(pipeline, placed_held_out, shown),
                "train_seconds": seconds,
                "loss_first_last_20": [float(np.mean(losses[:20])), float(np.mean(losses[-20:]))],
            }
            print(arm, done, json.dumps(measured[done]), flush=True)
            if args.sheet:
                Image.fromarray(contact_rows(shown)).save(f"{args.sheet}_{arm}.png")
        results["arms"][arm] = measured
        if args.save:
            pipeline.to("cpu").save_pretrained(f"{args.save}/{arm}")
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
