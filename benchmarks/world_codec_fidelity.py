"""Issue 12, item 1: what a world codec keeps of ground truth, one codec folder per column.

For each codec: held-out PSNR and the temporal profile (decoded ÷ truth frame-to-frame change at each position
of a latent group; 1.00 is faithful, item 1 asks 0.85–1.15 everywhere) over the recipe's 32 held-out clips
(``render_corpus(32, seed=2)``, what ``--phase codec`` reports), and the strict judge on ground truth through
the codec over the evaluation's held-out prompts, with shape accuracy split by size (item 1: the shapes must
still tell apart at both sizes). Beside it, ground truth itself (the judge's calibration: 100 %) and the
wrong-shape control (ground truth judged against a caption with every shape changed: must fail, 0 %). Chance
for shape is 33 %. Also the CPU time of decoding one chunk (group after group for a ``previous_frame`` decoder).

python benchmarks/world_codec_fidelity.py src/helios/default_model/codec W/codec --prompts 100 --out F.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from helios.encoders.world_codec import WorldCodec
from helios.recipes.default_model import CHUNK_FRAMES, codec_psnr, codec_temporal_profile, render_corpus
from helios.synthetic.detector import detect
from helios.synthetic.evaluate import held_out_scenes, through_codec
from helios.synthetic.judge import CHANCE, Scorecard, judge_detections, wrong_prompt
from helios.synthetic.world import HEIGHT, WIDTH, render


def judged(frames_of, scenes) -> dict:
    """The scorecard of ``frames_of(truth)`` for every scene, and its shape accuracy per size."""
    card, by_size = Scorecard.empty(), {}
    for scene in scenes:
        results = judge_detections(detect(frames_of(render(scene, CHUNK_FRAMES))), scene)
        card.add(results)
        for obj, result in zip(scene.objects, results):
            by_size.setdefault(obj.size, []).append(result["shape"])
    return {**card.accuracy(), "shape_by_size": {size: float(np.mean(v)) for size, v in sorted(by_size.items())}}


def wrong_shape_control(scenes) -> float:
    card = Scorecard.empty()
    for scene in scenes:
        card.add(judge_detections(detect(render(scene, CHUNK_FRAMES)), wrong_prompt(scene, "shape")))
    return card.accuracy()["shape"]


def decode_seconds(codec: WorldCodec, repeats: int = 3) -> float:
    size = (HEIGHT // codec.spatial_factor, WIDTH // codec.spatial_factor)
    latents = torch.randn(1, codec.latent_channels, 1 + (CHUNK_FRAMES - 1) // codec.temporal_factor, *size)
    codec.decode(latents)  # warm-up (and the weights' channels-last conversion)
    start = time.perf_counter()
    for _ in range(repeats):
        codec.decode(latents)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codecs", nargs="+", help="codec folders")
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts judged through each codec")
    parser.add_argument("--out", default="codec_fidelity.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    clips, _ = render_corpus(32, seed=2, frames=CHUNK_FRAMES)
    scenes = held_out_scenes(args.prompts)
    report = {
        "command": "python benchmarks/world_codec_fidelity.py " + " ".join(args.codecs) + f" --prompts {args.prompts}",
        "machine": platform.processor() or platform.machine(),
        "chance": CHANCE,
        "ground_truth": judged(lambda frames: frames, scenes),
        "wrong_shape_control": wrong_shape_control(scenes),
        "codecs": {},
    }
    for folder in args.codecs:
        codec = WorldCodec.from_pretrained(folder).eval()
        report["codecs"][folder] = {
            "held_out_psnr_db": codec_psnr(codec, clips, "cpu"),
            "temporal_profile": codec_temporal_profile(codec, clips, "cpu"),
            "through_codec": judged(lambda frames, c=codec: through_codec(c, frames), scenes),
            "decode_seconds_per_chunk": decode_seconds(codec),
        }
    print(
        f"{len(scenes)} held-out prompts; shape chance {CHANCE['shape']:.0%}; ground truth shape "
        f"{report['ground_truth']['shape']:.1%}; wrong-shape control {report['wrong_shape_control']:.1%}"
    )
    print("| codec | PSNR dB | change ratio at group positions 0/1/2/3 | shape (small / large) | present | decode s |")
    print("|---|---|---|---|---|---|")
    for folder, row in report["codecs"].items():
        ratios = " / ".join(f"{r:.2f}" for r in row["temporal_profile"]["ratio"])
        sizes = " / ".join(f"{v:.0%}" for v in row["through_codec"]["shape_by_size"].values())
        print(
            f"| {folder} | {row['held_out_psnr_db']:.2f} | {ratios} | {row['through_codec']['shape']:.0%} ({sizes}) "
            f"| {row['through_codec']['present']:.0%} | {row['decode_seconds_per_chunk']:.2f} |"
        )
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
