"""Activation offload (issue 15's training memory): the step time and the memory held between forward
and backward of an 8-block slice of the 14B transformer (its widths, stage-2 shape, full history window,
bf16 autocast over fp32 weights, gradient checkpointing), without offload, with PyTorch's
``save_on_cpu`` (the ninth session's implementation) and with ours (training/activation_offload.py).

    python benchmarks/activation_offload.py --out activation_offload.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

import torch
from stage_calls import call_inputs

from helios.bench.timing import run_meta
from helios.config import HELIOS_14B
from helios.model.transformer import HeliosTransformer
from helios.training.activation_offload import saved_tensors_on_host

MODES = {
    "resident": lambda: saved_tensors_on_host(False),
    "save_on_cpu": lambda: torch.autograd.graph.save_on_cpu(pin_memory=True),
    "overlapped": lambda: saved_tensors_on_host(True),
}


def step(model, inputs, mode: str) -> tuple[float, float]:
    """(ms, GiB allocated at the end of the forward beyond the weights and gradients)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    with torch.autocast("cuda", dtype=torch.bfloat16), MODES[mode]():
        loss = model(**inputs).float().square().mean()
    held = (torch.cuda.memory_allocated() - before) / 2**30
    loss.backward()
    end.record()
    end.synchronize()
    return start.elapsed_time(end), held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--blocks", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = HeliosTransformer.from_config(dataclasses.replace(HELIOS_14B, num_layers=args.blocks)).train()
    model.enable_gradient_checkpointing(True)
    inputs = call_inputs(48, 80)
    result = {
        "meta": run_meta(blocks=args.blocks),
    }
    for mode in MODES:
        for _ in range(2):
            step(model, inputs, mode)
            model.zero_grad(set_to_none=False)
        runs = []
        for _ in range(5):
            runs.append(step(model, inputs, mode))
            model.zero_grad(set_to_none=False)
        result[mode] = {"ms": statistics.median(r[0] for r in runs), "held_gib": statistics.median(r[1] for r in runs)}
        print(f"{mode}: {result[mode]['ms']:.0f} ms per step, {result[mode]['held_gib']:.2f} GiB held", flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
