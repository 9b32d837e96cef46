"""End-to-end Helios generation with the full-size components and random weights.

(`helios bench speed` is the general tool; this script produced the first committed figure.)
Builds the 14B transformer (bf16), UMT5-XXL (bf16) and the Wan2.1 VAE (fp32, as released) directly
on the GPU — no download — and runs ``HeliosPipeline`` with a preset, after one warm-up call.

Definitions: end-to-end FPS = returned frames / wall time of the ``generate`` call (prompt
encoding, every chunk's denoising and VAE decode, and the copy of frames to the host included);
time to first chunk = from the call until chunk 0's frames are on the host.

    python benchmarks/pipeline_e2e.py --preset helios-distilled --frames 240 --out e2e.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from helios import HeliosPipeline
from helios.bench.speed import PROMPT
from helios.bench.speed import build_pipeline as build


def build_pipeline(preset: str, device: str) -> HeliosPipeline:
    return build(size="14b", preset=preset, device=device, dtype=torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="helios-distilled")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--out", default="pipeline_e2e.json")
    args = parser.parse_args()
    device = "cuda"
    started = time.time()
    pipeline = build_pipeline(args.preset, device)
    print(
        f"built components in {time.time() - started:.0f} s; "
        f"{torch.cuda.memory_allocated() / 2**30:.1f} GiB of weights",
        flush=True,
    )

    pipeline.generate(PROMPT, num_frames=33, seed=0)  # warm-up: kernels, allocator, cuDNN plans
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    calls_before = time.perf_counter()
    video = pipeline.generate(PROMPT, num_frames=args.frames, seed=1)
    wall = time.perf_counter() - calls_before

    latencies = [c.generation_seconds for c in video.chunks]
    steady = latencies[1:] or latencies
    result = dict(
        preset=args.preset,
        requested_frames=args.frames,
        returned_frames=len(video.frames),
        height=video.frames.shape[1],
        width=video.frames.shape[2],
        chunks=len(video.chunks),
        wall_seconds=wall,
        end_to_end_fps=len(video.frames) / wall,
        time_to_first_chunk_s=video.chunks[0].since_start_seconds,
        chunk_latency_s=latencies,
        steady_chunk_mean_s=statistics.mean(steady),
        steady_chunk_jitter_s=statistics.pstdev(steady),
        peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30,
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(sys.argv),
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "chunk_latency_s"}, indent=1))
    print(
        "| preset | frames returned | wall s | end-to-end FPS | time to first chunk s "
        "| steady chunk s (±) | peak GPU GiB |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.preset} | {len(video.frames)} | {wall:.1f} | {result['end_to_end_fps']:.2f} | "
        f"{result['time_to_first_chunk_s']:.2f} | "
        f"{result['steady_chunk_mean_s']:.2f} (±{result['steady_chunk_jitter_s']:.2f}) | "
        f"{result['peak_gpu_gib']:.1f} |"
    )


if __name__ == "__main__":
    main()
