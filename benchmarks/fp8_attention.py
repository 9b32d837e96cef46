"""FP8 attention (issue 14): our Triton kernel against cuDNN's bf16 attention at the 14B model's shapes,
and its error in a whole stage-2 call, alone and with FP8 GEMMs (end-to-end speed: `helios bench speed`).

    python benchmarks/fp8_attention.py --out fp8_attention.json

Random 14B weights, the full history window (as benchmarks/stage_calls.py), 512 text tokens. The attention
shapes are read from the model (a hook on the first block's self- and cross-attention). Kernel error: the
relative L2 distance of its output to cuDNN's bf16 output (itself ~0.3 % from exact) and to the same
quantisation emulated in fp32; the call's error: its output against bf16 GEMMs with cuDNN attention (eager).
"""

from __future__ import annotations

import argparse
import json

import torch
from stage_calls import STAGES, call_inputs

from helios.bench.timing import cuda_median_ms, run_meta
from helios.config import HELIOS_14B
from helios.model.attention import attention, set_attention_backend
from helios.model.fp8 import quantize_linears, relative_l2
from helios.model.kernels.fp8_attention import fp8_attention_core, fp8_attention_emulated, quantized_operands
from helios.model.transformer import HeliosTransformer


@torch.no_grad()
def attention_shapes(transformer: HeliosTransformer) -> dict:
    """(queries, keys) of the first block's self- and cross-attention for each stage's call."""
    shapes, seen = {}, {}
    block = transformer.blocks[0]

    def record(kind):
        def hook(module, args, kwargs):
            context = kwargs.get("context")
            seen[kind] = (args[0].shape[1], args[0].shape[1] if context is None else context.shape[1])

        return hook

    hooks = [
        block.attn1.register_forward_pre_hook(record("self"), with_kwargs=True),
        block.attn2.register_forward_pre_hook(record("cross"), with_kwargs=True),
    ]
    try:
        for name, (h, w, _) in STAGES.items():
            transformer(**call_inputs(h, w))
            shapes[name] = dict(seen)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


@torch.no_grad()
def kernel_rows(shapes: dict, heads: int, head_dim: int) -> list[dict]:
    rows = []
    generator = torch.Generator("cuda").manual_seed(0)
    for stage, kinds in shapes.items():
        for kind, (queries, keys) in kinds.items():

            def randn(n):
                return torch.randn(1, n, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=generator)

            q, k, v = randn(queries), randn(keys), randn(keys)
            flop = 4 * queries * keys * heads * head_dim
            reference = attention(q, k, v, "cudnn")
            row = dict(stage=stage, kind=kind, queries=queries, keys=keys)
            for backend in ("cudnn", "fp8"):
                ms = cuda_median_ms(lambda b=backend, q=q, k=k, v=v: attention(q, k, v, b), warmup=5, repeat=20)
                row[f"{backend}_ms"], row[f"{backend}_tflops"] = ms, flop / ms / 1e9
            text = (
                f"{stage} {kind} {queries}×{keys}: cuDNN {row['cudnn_ms']:.2f} ms ({row['cudnn_tflops']:.0f} TFLOP/s)"
            )
            # the kernel alone, on inputs quantised beforehand (the compiled model fuses the quantisation
            # into the operations before it)
            operands = quantized_operands(q, k, v)
            row["fp8_kernel_ms"] = cuda_median_ms(lambda o=operands: fp8_attention_core(*o), 5, 20)
            out = attention(q, k, v, "fp8")
            row["fp8_vs_cudnn_rel_l2"] = relative_l2(out, reference)
            row["fp8_vs_emulated_rel_l2"] = relative_l2(out, fp8_attention_emulated(q, k, v))
            text += (
                f"; fp8 {row['fp8_ms']:.2f} ms (kernel {row['fp8_kernel_ms']:.2f}), error vs cuDNN "
                f"{row['fp8_vs_cudnn_rel_l2']:.4f}, vs emulated {row['fp8_vs_emulated_rel_l2']:.4f}"
            )
            print(text, flush=True)
            rows.append(row)
    return rows


@torch.no_grad()
def stage2_errors(transformer: HeliosTransformer) -> dict:
    """Relative L2 of the stage-2 call's output against bf16 GEMMs + cuDNN attention, for FP8 attention,
    FP8 GEMMs (per row) and both (quantises the model's linear layers in place)."""
    inputs = call_inputs(48, 80)

    def run(backend: str) -> torch.Tensor:
        set_attention_backend(transformer, backend)
        return transformer(**inputs).float()

    reference = run("cudnn")
    errors = {"fp8_attention": relative_l2(run("fp8"), reference)}
    quantize_linears(transformer, "per_row", "scaled_mm", inplace=True)
    errors["fp8_gemms"] = relative_l2(run("cudnn"), reference)
    errors["fp8_gemms_and_fp8_attention"] = relative_l2(run("fp8"), reference)
    for name, error in errors.items():
        print(f"stage-2 call, {name}: {error:.4f} relative L2 against bf16", flush=True)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.device("cuda"):
        transformer = HeliosTransformer.from_config(HELIOS_14B).cast(torch.bfloat16).eval()
    set_attention_backend(transformer, "cudnn")
    result = {"meta": run_meta()}
    shapes = attention_shapes(transformer)
    result["shapes"] = shapes
    result["kernel"] = kernel_rows(shapes, HELIOS_14B.num_attention_heads, HELIOS_14B.attention_head_dim)
    result["stage2_call_rel_l2_vs_bf16"] = stage2_errors(transformer)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
