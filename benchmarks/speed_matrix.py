"""One 14B pipeline taken through a sequence of configurations, each timed end to end (issue 5).

    python benchmarks/speed_matrix.py --out matrix.json --frames 240 \
        diffusers vae=bf16 diffusers-compiled ours:attention=cudnn,overlap_vae \
        ours:fused_kernels,fuse_qkv,compile ours:cuda_graphs fp8-report ours:fp8=per_row

Steps run in order on one set of random weights built on the GPU (same definitions as
``helios bench speed``):
  diffusers / diffusers-compiled   diffusers 0.42.1 on the same weights (compiled: its regional
                                   compile + cuDNN attention)
  vae=bf16                         cast the shared VAE to bf16 from here on
  ours[:flag,flag=value,...]       our pipeline; flags are FastPaths fields and accumulate
  fp8-report                       FP8 error vs bf16 of one stage-2 transformer call, per layer and end
                                   to end; the model stays quantised (in place) afterwards
The memory modes (offload, memory_limit_gib) run in a fresh process: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields

import torch

from helios.bench.speed import FastPaths, build_pipeline, format_table, measure_diffusers, measure_ours
from helios.config import sampler_preset
from helios.model.graphs import cuda_graphs_of, enable_cuda_graphs

FLAG_TYPES = {f.name: f.type for f in fields(FastPaths)}


def parse_flags(text: str) -> dict:
    flags = {}
    for token in filter(None, text.split(",")):
        name, _, value = token.partition("=")
        if name not in FLAG_TYPES:
            raise SystemExit(f"unknown fast path {name!r}; known: {', '.join(FLAG_TYPES)}")
        flags[name] = (float(value) if name == "memory_limit_gib" else value) if value else True
    if flags.get("offload") is True:
        flags["offload"] = "all"
    return flags


def stage2_inputs(pipeline, seed: int = 0) -> dict:
    """A full-resolution (stage-2) call with the full history window and 512 text tokens (at 384×640:
    the call of benchmarks/transformer_vs_diffusers.py)."""
    device = pipeline.device
    generator = torch.Generator(device).manual_seed(seed)
    h, w = pipeline.height // 8, pipeline.width // 8

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=device, dtype=torch.bfloat16)

    return dict(
        hidden_states=randn(1, 16, 9, h, w),
        timestep=torch.tensor([742], device=device),
        encoder_hidden_states=randn(1, 512, pipeline.transformer.config.text_dim),
        indices_hidden_states=torch.arange(20, 29)[None],
        indices_latents_history_short=torch.tensor([[0, 19]]),
        indices_latents_history_mid=torch.tensor([[17, 18]]),
        indices_latents_history_long=torch.arange(1, 17)[None],
        latents_history_short=randn(1, 16, 2, h, w),
        latents_history_mid=randn(1, 16, 2, h, w),
        latents_history_long=randn(1, 16, 16, h, w),
    )


def fp8_report(pipeline, scales: str = "per_row") -> dict:
    """FP8 errors of one stage-2 call; leaves the transformer quantised (in place)."""
    from helios.model.fp8 import fp8_error_report

    transformer = pipeline.transformer
    report = fp8_error_report(transformer, stage2_inputs(pipeline), scales, "scaled_mm")
    if cuda_graphs_of(transformer) is not None:  # captured with the 16-bit layers
        enable_cuda_graphs(transformer, True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    layers = report["per_layer"]
    by_kind: dict[str, list[float]] = {}
    for name, error in layers.items():
        by_kind.setdefault(name.split(".", 2)[2], []).append(error)
    return {
        "scales": scales,
        "end_to_end_rel_l2": report["end_to_end"],
        "mean_layer_rel_l2": report["mean_layer"],
        "worst_layer": report["worst_layer"],
        "worst_layer_rel_l2": layers[report["worst_layer"]],
        "per_kind_mean_rel_l2": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "per_layer": layers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="+")
    parser.add_argument("--preset", default="helios-distilled")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="14b", choices=["14b", "tiny"], help="tiny: a CPU smoke run of the script")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64  # blocks recompile per stage shape, and again after FP8
    pipeline = build_pipeline(args.size, sampler_preset(args.preset), args.device, torch.bfloat16)
    flags: dict = {}
    results, records = [], []

    def save():
        meta = dict(
            card=torch.cuda.get_device_name() if pipeline.device.type == "cuda" else "cpu",
            torch=torch.__version__,
            date=time.strftime("%Y-%m-%d"),
            preset=args.preset,
            frames=args.frames,
            command=" ".join(sys.argv),
        )
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "steps": records}, f, indent=2)

    for step in args.steps:
        started = time.perf_counter()
        if step in ("diffusers", "diffusers-compiled"):
            compiled = step == "diffusers-compiled"
            result = measure_diffusers(
                pipeline, args.frames, compile=compiled, attention="_native_cudnn" if compiled else None
            )
        elif step == "vae=bf16":
            FastPaths(vae_dtype="bf16").apply(pipeline)  # only the VAE: every other field is off
            flags["vae_dtype"] = "bf16"
            records.append({"step": step})
            continue
        elif step == "fp8-report":
            report = fp8_report(pipeline)
            print(
                f"FP8 (per-row) error vs bf16, one stage-2 call: end to end {report['end_to_end_rel_l2']:.4f}, "
                f"mean layer {report['mean_layer_rel_l2']:.4f}, worst {report['worst_layer']} "
                f"{report['worst_layer_rel_l2']:.4f}",
                flush=True,
            )
            records.append({"step": step, "report": report})
            save()
            continue
        elif step.startswith("ours"):
            flags.update(parse_flags(step.partition(":")[2]))
            fast = FastPaths(**flags)
            fast.apply(pipeline)
            result = measure_ours(pipeline, args.frames, breakdown=False)
            result.implementation = f"helios [{fast.label()}]"
        else:
            raise SystemExit(f"unknown step {step!r}")
        result_dict = asdict(result)
        records.append({"step": step, "setup_and_run_seconds": time.perf_counter() - started, "result": result_dict})
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
        save()
    print(format_table(results))


if __name__ == "__main__":
    main()
