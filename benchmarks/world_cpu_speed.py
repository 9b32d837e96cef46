"""Speed of the embedded world models where users first run them: the CPU (the Distilled default against
its Mid teacher). Per model: one warm-up chunk, then REPEATS timed ``generate`` calls of FRAMES frames
(text encoding, every chunk's sampling and decoding included); seconds per chunk and frames per second.

python benchmarks/world_cpu_speed.py --models default default-mid --frames 240 --out world_cpu_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from helios import HeliosPipeline

PROMPT = "a large red circle moves right slowly and a small yellow square moves up quickly on a black background"


def measure(name: str, frames: int, repeats: int) -> dict:
    pipeline = HeliosPipeline.from_pretrained(name, device="cpu")
    pipeline.generate(PROMPT, num_frames=pipeline.chunk_frames, seed=0)  # warm-up
    seconds = []
    for repeat in range(repeats):
        started = time.perf_counter()
        video = pipeline.generate(PROMPT, num_frames=frames, seed=repeat)
        seconds.append(time.perf_counter() - started)
    chunks = pipeline.chunks_for(frames)
    median = statistics.median(seconds)
    sampler = pipeline.sampler
    return {
        "model": name,
        "sampler": f"{sampler.name}: pyramid steps {sampler.pyramid_steps}, guidance {sampler.guidance_scale}",
        "frames": len(video.frames),
        "chunks": chunks,
        "seconds": seconds,
        "seconds_per_chunk": median / chunks,
        "fps": len(video.frames) / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "default-mid"])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="world_cpu_speed.json")
    args = parser.parse_args()
    rows = [measure(name, args.frames, args.repeats) for name in args.models]
    print("| model | sampler | frames | s / chunk | FPS | × the last model |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = rows[-1]["seconds_per_chunk"] / row["seconds_per_chunk"]
        print(
            f"| {row['model']} | {row['sampler']} | {row['frames']} | {row['seconds_per_chunk']:.2f} "
            f"| {row['fps']:.1f} | {ratio:.2f}× |"
        )
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
