"""Expected FPS and memory on 4 and 8 GPUs, from the one- and two-GPU measurements (issue 15).

Inference (Ulysses context parallelism, the paper's 1/1/1 workload): a steady chunk on N cards is
    decode + compute / N + exchange(N),
with decode and compute taken from the one-GPU run and the VAE benchmark, and exchange(2) what the
two-GPU run adds beyond compute / 2. Two bounds for exchange(N): all-to-all traffic per card scales as
(N − 1) / N² (optimistic), or the overhead stays what it was on two cards (pessimistic). End-to-end
FPS keeps the two-GPU run's ratio of end-to-end to steady-state rate (the first chunk, text encoding).
Memory per card does not shrink: context parallelism replicates the weights.

Training (FSDP2, batch 1 per card, stage 2): weights / N + what the two-GPU run held beside its
weight shard (one GPU: measured).

    python benchmarks/scaling_estimate.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CHUNK_FRAMES = 33


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def steady_chunk(result: dict) -> float:
    return statistics.mean(result["chunk_latency_s"][1:])


def span(values: list[float], spec: str) -> str:
    """One figure, or the range of the two bounds."""
    return f"{values[0]:{spec}}" if len(values) == 1 else f"{min(values):{spec}}–{max(values):{spec}}"


def main() -> None:
    one = load("speed_111_one_gpu_h200x2.json")["results"][0]
    two = load("speed_111_two_gpus_h200x2.json")["results"][0]
    decode = load("vae_decode_with_ours_h200.json")["results"]["helios_bf16_channels_last_compiled"]["ms"] / 1000
    compute = steady_chunk(one) - decode
    exchange_two = steady_chunk(two) - decode - compute / 2
    e2e_ratio = two["end_to_end_fps"] / (CHUNK_FRAMES / steady_chunk(two))
    train = {row["stage"]: row for row in load("train_step_14b_fsdp_two_gpus_h200x2.json")["rows"]}
    train_one = next(r for r in load("train_step_14b_one_gpu_h200x2.json")["rows"] if r["stage"] == 2)
    weights = load("train_step_14b_fsdp_two_gpus_h200x2.json")["meta"]["weights_gib_rank0"] * 2
    print(f"measured: decode {decode:.3f} s, compute {compute:.3f} s, exchange on two cards {exchange_two:.3f} s")
    print("| GPUs | steady chunk s | end-to-end FPS (1/1/1) | inference GiB per card | stage-2 training GiB per card |")
    print("|---|---|---|---|---|")
    for n in (1, 2, 4, 8):
        if n == 1:
            chunks = [steady_chunk(one)]
        elif n == 2:
            chunks = [steady_chunk(two)]
        else:
            optimistic = exchange_two * ((n - 1) / n**2) / (1 / 4)
            chunks = [decode + compute / n + optimistic, decode + compute / n + exchange_two]
        if n == 1:
            fps = [one["end_to_end_fps"]]
        else:
            fps = [CHUNK_FRAMES / c * e2e_ratio for c in chunks]
        training = train_one["peak_gib"] if n == 1 else weights / n + (train[2]["peak_gib"] - weights / 2)
        print(f"| {n} | {span(chunks, '.3f')} | {span(fps, '.1f')} | {two['peak_gpu_gib']:.1f} | {training:.1f} |")


if __name__ == "__main__":
    main()
