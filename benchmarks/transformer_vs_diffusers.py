"""Full 14B Helios transformer in bf16: our forward against diffusers' on the same (random) weights.

One call per pyramid stage at 384×640 (noisy latents 12×20, 24×40, 48×80, 9 frames) with the full
history window (short 2 + mid 2 + long 16 frames at 48×80) and 512 text tokens. Both models share
the same weight tensors (ours is assigned diffusers' parameters), so only one 28.6 GB copy lives
on the GPU. Reports the relative L2 error of ours against diffusers, the median time per call and
the peak GPU memory above the weights, prints a table and writes JSON.

    python benchmarks/transformer_vs_diffusers.py --out results.json [--backends sdpa cudnn]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from helios import HeliosTransformer
from helios.config import HELIOS_14B
from helios.model import attention_backend

STAGES = {"stage0": (12, 20), "stage1": (24, 40), "stage2": (48, 80)}
HISTORY_SIZE = (48, 80)


def build_reference(device: str):
    """diffusers' 14B transformer with random bf16 weights and the released fp32-kept parameters."""
    from diffusers import HeliosTransformer3DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = HeliosTransformer3DModel(**HELIOS_14B.diffusers_kwargs())
    finally:
        torch.set_default_dtype(previous)
    for name, param in model.named_parameters():
        if any(p in name for p in model._keep_in_fp32_modules):
            param.data = param.data.float()
    return model.eval()


def ours_sharing(reference) -> HeliosTransformer:
    with torch.device("meta"):
        model = HeliosTransformer.from_config(HELIOS_14B)
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    return model.eval()


def inputs(size, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.bfloat16)

    text = randn(1, 512, 4096)
    text[:, 40:] = 0  # UMT5 rows after the prompt length are zero
    return dict(
        hidden_states=randn(1, 16, 9, *size),
        timestep=torch.tensor([742], device=device),
        encoder_hidden_states=text,
        indices_hidden_states=torch.arange(20, 29, device=device)[None],
        indices_latents_history_short=torch.tensor([[0, 19]], device=device),
        indices_latents_history_mid=torch.tensor([[17, 18]], device=device),
        indices_latents_history_long=torch.arange(1, 17, device=device)[None],
        latents_history_short=randn(1, 16, 2, *HISTORY_SIZE),
        latents_history_mid=randn(1, 16, 2, *HISTORY_SIZE),
        latents_history_long=randn(1, 16, 16, *HISTORY_SIZE),
    )


def timed(fn, warmup=2, repeat=5):
    for _ in range(warmup):
        out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return out, statistics.median(times)


def peak_above(fn, baseline):
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - baseline) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="transformer_vs_diffusers.json")
    parser.add_argument("--backends", nargs="+", default=["sdpa", "cudnn"])
    args = parser.parse_args()
    device = "cuda"
    started = time.time()
    reference = build_reference(device)
    ours = ours_sharing(reference)
    weights_gb = torch.cuda.memory_allocated() / 2**30
    print(f"built 14B models (shared weights, {weights_gb:.1f} GiB) in {time.time() - started:.0f} s", flush=True)

    rows = []
    with torch.inference_mode():
        for stage, size in STAGES.items():
            kwargs = inputs(size, device)
            baseline = torch.cuda.memory_allocated()
            expected, ref_ms = timed(lambda: reference(**kwargs).sample)
            ref_peak = peak_above(lambda: reference(**kwargs), baseline)
            for backend in args.backends:
                with attention_backend(ours, backend):
                    got, ours_ms = timed(lambda: ours(**kwargs))
                    ours_peak = peak_above(lambda: ours(**kwargs), baseline)
                error = ((got.float() - expected.float()).norm() / expected.float().norm()).item()
                tokens = 9 * size[0] * size[1] // 4 + 2400
                rows.append(
                    dict(
                        stage=stage,
                        latent=f"{size[0]}x{size[1]}",
                        tokens=tokens,
                        backend=backend,
                        rel_l2=error,
                        diffusers_ms=ref_ms,
                        ours_ms=ours_ms,
                        speedup=ref_ms / ours_ms,
                        diffusers_peak_gib=ref_peak,
                        ours_peak_gib=ours_peak,
                    )
                )
                print(rows[-1], flush=True)

    meta = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        weights_gib=weights_gb,
        command=" ".join(sys.argv),
        date=time.strftime("%Y-%m-%d"),
        note="peak = max allocated during one call minus what was allocated before it (weights + inputs)",
    )
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"\n{meta['device']}, torch {meta['torch']}, bf16, random weights")
    print(
        "| stage | noisy latent | tokens | our attention | rel. L2 vs diffusers | diffusers ms | ours ms | speed-up "
        "| diffusers peak GiB | ours peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['latent']} | {r['tokens']} | {r['backend']} | {r['rel_l2']:.2e} | "
            f"{r['diffusers_ms']:.0f} | {r['ours_ms']:.0f} | {r['speedup']:.2f}× | "
            f"{r['diffusers_peak_gib']:.2f} | {r['ours_peak_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()
