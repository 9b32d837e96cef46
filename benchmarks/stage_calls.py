"""Where the end-to-end time goes: one transformer call per pyramid stage, and one VAE chunk decode,
for the eager, compiled and compiled-FP8 paths of the 14B model; FP8 error per layer (issue 5).

    python benchmarks/stage_calls.py --out stage_calls.json

Transformer calls use the full history window (short 2 + mid 2 + long 16 latent frames at 48×80)
and 512 text tokens; cuDNN attention; median of 5 timed calls after 3 warm-up calls (CUDA events).
FLOP counts per call are the speed issue's (69.7 / 119.1 / 359.6 TFLOP); achieved TFLOP/s is set
against the H100 GEMM ceilings the speed issue measured (bf16 ~790, FP8 ~1,420 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json

import torch

from helios.bench.speed import build_pipeline
from helios.bench.timing import cuda_median_ms, run_meta
from helios.model.attention import set_attention_backend
from helios.model.fp8 import fp8_error_report
from helios.model.speed import compile_blocks

STAGES = {"stage0": (12, 20, 69.7), "stage1": (24, 40, 119.1), "stage2": (48, 80, 359.6)}
CEILING_TFLOPS = {"bf16": 790.0, "fp8": 1420.0}


def call_inputs(latent_h: int, latent_w: int, seed: int = 0) -> dict:
    generator = torch.Generator("cuda").manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device="cuda", dtype=torch.bfloat16)

    return dict(
        hidden_states=randn(1, 16, 9, latent_h, latent_w),
        timestep=torch.tensor([742], device="cuda"),
        encoder_hidden_states=randn(1, 512, 4096),
        indices_hidden_states=torch.arange(20, 29)[None],
        indices_latents_history_short=torch.tensor([[0, 19]]),
        indices_latents_history_mid=torch.tensor([[17, 18]]),
        indices_latents_history_long=torch.arange(1, 17)[None],
        latents_history_short=randn(1, 16, 2, 48, 80),
        latents_history_mid=randn(1, 16, 2, 48, 80),
        latents_history_long=randn(1, 16, 16, 48, 80),
    )


@torch.no_grad()
def stage_times(transformer, precision: str) -> dict:
    out = {}
    for name, (h, w, tflop) in STAGES.items():
        inputs = call_inputs(h, w)
        ms = cuda_median_ms(lambda inputs=inputs: transformer(**inputs))
        achieved = tflop / (ms / 1000)
        out[name] = {"ms": ms, "tflops": achieved, "fraction_of_gemm_ceiling": achieved / CEILING_TFLOPS[precision]}
        print(
            f"{precision} {name}: {ms:.0f} ms, {achieved:.0f} TFLOP/s "
            f"({out[name]['fraction_of_gemm_ceiling']:.0%} of the GEMM ceiling)",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    pipeline = build_pipeline("14b", "helios-distilled", "cuda", torch.bfloat16, vae_dtype=torch.bfloat16)
    transformer = pipeline.transformer
    set_attention_backend(transformer, "cudnn")
    result = {"meta": run_meta()}

    latents = torch.randn(1, 16, 9, 48, 80, device="cuda")
    vae_ms = cuda_median_ms(lambda: pipeline.codec.decode(latents), warmup=2, repeat=3)
    result["vae_decode_chunk_ms_bf16"] = vae_ms
    print(f"VAE decode of one chunk (bf16, 33 frames at 384×640): {vae_ms:.0f} ms", flush=True)

    result["eager_bf16"] = stage_times(transformer, "bf16")
    compile_blocks(transformer)
    result["compiled_bf16"] = stage_times(transformer, "bf16")
    compile_blocks(transformer, False)  # the per-layer hooks need eager blocks
    report = fp8_error_report(transformer, call_inputs(48, 80), "per_row", "scaled_mm")
    compile_blocks(transformer)
    kinds: dict[str, list[float]] = {}
    for name, error in report["per_layer"].items():
        kinds.setdefault(name.split(".", 2)[2], []).append(error)
    result["fp8_error"] = {
        "end_to_end_rel_l2": report["end_to_end"],
        "mean_layer_rel_l2": report["mean_layer"],
        "worst_layer": report["worst_layer"],
        "worst_layer_rel_l2": report["per_layer"][report["worst_layer"]],
        "per_kind_mean_rel_l2": {k: sum(v) / len(v) for k, v in sorted(kinds.items())},
    }
    print(
        f"FP8 per-row, stage-2 call: end-to-end rel. L2 {report['end_to_end']:.4f}, "
        f"mean layer {report['mean_layer']:.4f}",
        flush=True,
    )
    torch.cuda.empty_cache()
    result["compiled_fp8"] = stage_times(transformer, "fp8")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
