"""One LoRA training step of the full 14B Helios transformer at 384×640 (random weights).

Stage 1 (flow matching with the full history window: short 2 + mid 2 + long 16 latent frames) and
stage 2 (pyramid flow matching: one sample per pyramid stage, three forwards), batch 1 and 2, LoRA on
every linear layer (rank 128 as the official stage-1 configs) plus fully trained memory patches,
gradient checkpointing on, bf16 weights, AdamW. Reports step time (after one warm-up step) and peak
GPU memory.

    python benchmarks/train_step_14b.py --out train_step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from helios import HeliosTransformer
from helios.config import HELIOS_14B, HistorySettings
from helios.sampling.schedules import PyramidConstants
from helios.training.objectives import flow_matching_loss, pyramid_flow_matching_loss
from helios.training.trainer import add_lora


def build(device: str, rank: int) -> HeliosTransformer:
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = HeliosTransformer.from_config(HELIOS_14B).cast(torch.bfloat16)
    finally:
        torch.set_default_dtype(torch.float32)
    model = add_lora(model, rank, rank)
    for conv in (model.patch_short, model.patch_mid, model.patch_long):
        conv.requires_grad_(True)
    model.enable_gradient_checkpointing(True)
    return model.train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="train_step_14b.json")
    parser.add_argument("--rank", type=int, default=128)
    args = parser.parse_args()
    device = "cuda"
    model = build(device, args.rank)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    weights = torch.cuda.memory_allocated() / 2**30
    print(
        f"14B + LoRA r{args.rank}: {sum(p.numel() for p in trainable) / 1e6:.0f} M trainable, {weights:.1f} GiB",
        flush=True,
    )
    settings, constants = HistorySettings(), PyramidConstants()
    rows = []
    for stage in (1, 2):
        for batch in (1, 2):
            g = torch.Generator().manual_seed(0)
            target = torch.randn(batch, 16, 9, 48, 80, device=device)
            history = torch.randn(batch, 16, 19, 48, 80, device=device)
            anchor = torch.randn(batch, 16, 1, 48, 80, device=device)
            text = torch.randn(batch, 512, 4096, device=device)

            def step():
                if stage == 1:
                    loss = flow_matching_loss(model, target, history, anchor, text, settings, g, dtype=torch.bfloat16)
                else:
                    loss = pyramid_flow_matching_loss(
                        model, target, history, anchor, text, settings, g, constants, dtype=torch.bfloat16
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                return loss

            step()  # warm-up (also allocates the optimizer state)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            loss = step()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            rows.append(
                dict(
                    stage=stage,
                    batch=batch,
                    step_seconds=seconds,
                    peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                    loss=float(loss),
                )
            )
            print(rows[-1], flush=True)
    meta = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        lora_rank=args.rank,
        weights_gib=weights,
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(sys.argv),
    )
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print("| stage | batch | step s | peak GPU GiB |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['batch']} | {r['step_seconds']:.2f} | {r['peak_gib']:.1f} |")


if __name__ == "__main__":
    main()
