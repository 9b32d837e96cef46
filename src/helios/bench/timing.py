"""Device timing for the benchmark scripts."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch


def cuda_median_ms(fn: Callable[[], object], warmup: int = 3, repeat: int = 5) -> float:
    """Median wall time of ``fn`` on the current CUDA stream, in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run_meta(**extra) -> dict:
    """What a GPU benchmark's JSON records about its run: the card, torch, the date, the command line."""
    return dict(
        card=torch.cuda.get_device_name(),
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(sys.argv),
        **extra,
    )
