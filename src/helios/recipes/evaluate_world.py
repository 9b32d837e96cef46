"""Evaluate a synthetic-world model (adherence, I2V/V2V conditioning, drift) with the world's detector.

python -m helios.recipes.evaluate_world [--model FOLDER] --prompts 50 --drift-frames 1440 \
    [--conditioning 60] [--i2v-direction 40] [--sensitivity 10] [--word-loss 24] [--word-loss-i2v 24] \
    [--history-loss 24] --out eval.json
(--prompts 0: no adherence, and no I2V/V2V unless --conditioning names a scene count)

A long run split over processes: --skip N --prompts K per process (scene N + i is sampled with seed N + i,
as in one run), then python -m helios.recipes.evaluate_world --merge part*.json --out eval.json
"""

from __future__ import annotations

import argparse
import json
import time

from ..generation import HeliosPipeline
from ..synthetic.evaluate import (
    drift_scene,
    evaluate_adherence,
    evaluate_conditioning,
    evaluate_drift,
    evaluate_history_loss,
    evaluate_i2v_direction,
    evaluate_sensitivity,
    evaluate_word_loss,
    held_out_scenes,
)
from ..synthetic.merge import merge_evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="world model folder, or default-mid (default: the embedded default model)")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--drift-frames", type=int, default=1440)
    parser.add_argument(
        "--conditioning",
        type=int,
        help="scenes for the I2V / V2V test (default: a fifth of --prompts; 0: skip) — more for a tighter V2V",
    )
    parser.add_argument(
        "--sensitivity", type=int, default=0, help="scenes for the prompt-sensitivity test (0: skip; 7 videos each)"
    )
    parser.add_argument(
        "--word-loss", type=int, default=0, help="scenes for the word-loss test (0: skip; no sampling, fast)"
    )
    parser.add_argument(
        "--i2v-direction",
        type=int,
        default=0,
        help="scenes for the I2V direction test: each continued from its first frame with its caption and with "
        "every direction reversed (0: skip; 2 videos each)",
    )
    parser.add_argument(
        "--word-loss-i2v",
        type=int,
        default=0,
        help="scenes for the word-loss test continued from each chunk's first frame as I2V (0: skip)",
    )
    parser.add_argument(
        "--history-loss", type=int, default=0, help="scenes for the history-loss test (0: skip; no sampling)"
    )
    parser.add_argument(
        "--skip", type=int, default=0, help="start after this many held-out scenes (one long run split over processes)"
    )
    parser.add_argument("--out", default="eval.json")
    parser.add_argument("--device", default="cpu", help="where the model runs (the judge runs on the CPU)")
    parser.add_argument("--merge", nargs="+", metavar="PART", help="merge these results of a split run into --out")
    args = parser.parse_args()
    if args.merge:
        return merge_parts(args.merge, args.out)
    pipeline = HeliosPipeline.from_pretrained(args.model, device=args.device)
    started = time.time()
    conditioning = args.conditioning
    if conditioning is None:  # a fifth of the adherence prompts
        conditioning = max(1, args.prompts // 5) if args.prompts else 0
    counts = (
        args.prompts,
        conditioning,
        args.i2v_direction,
        args.sensitivity,
        args.word_loss,
        args.word_loss_i2v,
        args.history_loss,
    )
    scenes = held_out_scenes(max(*counts, 1), skip=args.skip)
    result = {}
    if args.prompts:
        result["adherence"] = evaluate_adherence(pipeline, scenes[: args.prompts], seed=args.skip)
    if conditioning:
        result["conditioning"] = evaluate_conditioning(pipeline, scenes[:conditioning], seed=args.skip)
    if args.i2v_direction:
        result["i2v_direction"] = evaluate_i2v_direction(pipeline, scenes[: args.i2v_direction], seed=args.skip)
    if args.sensitivity:
        result["sensitivity"] = evaluate_sensitivity(pipeline, scenes[: args.sensitivity])
    if args.word_loss:
        result["word_loss"] = evaluate_word_loss(pipeline, scenes[: args.word_loss])
    if args.word_loss_i2v:
        result["word_loss_i2v"] = evaluate_word_loss(pipeline, scenes[: args.word_loss_i2v], image=True)
    if args.history_loss:
        result["history_loss"] = evaluate_history_loss(pipeline, scenes[: args.history_loss])
    if args.drift_frames:
        result["drift"] = evaluate_drift(pipeline, drift_scene(held_out_scenes(10)), args.drift_frames)
    result["seconds"] = time.time() - started
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if "adherence" in result:
        print("\n\n".join(result["adherence"].pop("tables")))
        print("wrong-prompt controls (must be near 0):", result["adherence"]["wrong_prompt_controls"])
        print("exact object count:", result["adherence"]["exact_object_count"])
        print("clean background (clips with ≤ 1 % stray pixels):", result["adherence"]["clean_background"])
    print_summary(result)


def print_summary(result: dict) -> None:
    print(json.dumps({k: v for k, v in result.items() if k not in ("drift", "adherence", "conditioning")}, indent=1))
    if "conditioning" in result:
        print(json.dumps({k: v for k, v in result["conditioning"].items() if k != "i2v_start_errors_px"}, indent=1))
    if "drift" in result:
        print(json.dumps({k: v for k, v in result["drift"].items() if k != "per_chunk"}, indent=1))


def merge_parts(paths: list[str], out: str) -> None:
    results = []
    for path in paths:
        try:
            with open(path) as f:
                results.append(json.load(f))
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"evaluate_world --merge: cannot read {path}: {error}") from None
    try:
        merged = merge_evaluations(results)
    except ValueError as error:
        raise SystemExit(f"evaluate_world --merge: {error}") from None
    with open(out, "w") as f:
        json.dump(merged, f, indent=1)
    if "adherence" in merged:
        print(json.dumps({k: merged["adherence"][k] for k in ("prompts", "objects", "model")}, indent=1))
    print_summary(merged)


if __name__ == "__main__":
    main()
