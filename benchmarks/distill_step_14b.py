"""Stage 3 on one GPU at full size: one critic step and one student step of the paper's distillation
configuration with the 14B transformer (random weights, bf16, 384×640, one 33-frame chunk on a full
history window), with and without each memory trick.

Models as the paper (§4.2): the student (14B + LoRA r256), one score network for the real and the fake
score (14B + critic LoRA r256, adapters toggled) with GAN heads on blocks 5/15/25/35 and the output,
the student's EMA (fp32 copy of its trainable weights), AdamW for both. Gradient checkpointing on.
Variants: Cache Grad for the student's GAN term on/off, the idle model parked in pinned host memory
on/off. A variant that runs out of memory is reported as such.

    python benchmarks/distill_step_14b.py --out distill_step_14b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from helios import HeliosTransformer
from helios.config import HELIOS_14B, TINY, DistillSettings, TrainConfig
from helios.model.window import window_frames
from helios.training.distillation import Distillation, Parking
from helios.training.trainer import add_lora


def build(device: str, rank: int, size: str = "14b") -> HeliosTransformer:
    # (the tiny CPU check runs in fp32: CPU bf16 conv3d backward is not what is measured here)
    dtype = torch.bfloat16 if size == "14b" else torch.float32
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = HeliosTransformer.from_config(HELIOS_14B if size == "14b" else TINY).cast(dtype)
    finally:
        torch.set_default_dtype(torch.float32)
    model = add_lora(model, rank, rank)
    model.enable_gradient_checkpointing(True)
    return model.train()


def gib(value: int) -> float:
    return round(value / 2**30, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="distill_step_14b.json")
    parser.add_argument("--rank", type=int, default=256)
    parser.add_argument("--variants", default="all,no_cache,no_park,none")
    parser.add_argument("--size", choices=["14b", "tiny"], default="14b", help="tiny: a check of the script on a CPU")
    args = parser.parse_args()
    device = torch.device("cuda" if args.size == "14b" else "cpu")
    started = time.perf_counter()
    student = build(device, args.rank, args.size)
    head_dim = 768 if args.size == "14b" else 16
    settings = DistillSettings(
        phase="dmd", teacher="14b", critic_lora_rank=args.rank, gan_start_step=0, gan_head_dim=head_dim
    )
    config = TrainConfig(stage=3, distill=settings, mixed_precision="bf16", betas=(0.0, 0.999), max_grad_norm=10.0)
    distill = Distillation(config, student, device, lambda spec: build(device, args.rank, args.size), lambda m, r, a: m)
    distill.heads.to(student.dtype)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-6, betas=(0.0, 0.999), weight_decay=1e-3)
    ema = [p.detach().float().clone() for p in trainable]
    built = time.perf_counter() - started
    cuda = device.type == "cuda"
    resident = torch.cuda.memory_allocated() if cuda else 0
    print(
        f"built in {built:.0f} s: student + score network + heads + EMA {gib(resident)} GiB; "
        f"trainable {sum(p.numel() for p in trainable) / 1e6:.0f} M (student), "
        f"{sum(p.numel() for p in distill.critic_params.values()) / 1e6:.0f} M (critic)",
        flush=True,
    )
    g = torch.Generator().manual_seed(0)
    h, w = (48, 80) if args.size == "14b" else (8, 8)  # 384×640 latents / a tiny check
    channels, history = student.config.in_channels, config.history
    batch = (
        torch.randn(1, channels, history.chunk_latent_frames, h, w, device=device),  # target chunk
        torch.randn(1, channels, window_frames(history), h, w, device=device),  # real history (Pure Teacher Forcing)
        torch.randn(1, channels, 1, h, w, device=device),  # anchor
        torch.randn(1, 512, student.config.text_dim, device=device),  # text (512 UMT5 tokens)
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def critic_step():
        return distill.critic_step(student, batch, g, 1, torch.bfloat16, autocast)

    def student_step():
        with autocast:
            parts = distill.generator_loss(student, batch, g, 0, 1, torch.bfloat16)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 10.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema, trainable):
                e.mul_(0.99).add_(p.detach().float(), alpha=0.01)

    parking = (Parking(student, device), Parking(distill.score, device))
    rows = []
    for variant in args.variants.split(","):
        distill.settings = dataclasses.replace(settings, cache_gan_grad=variant in ("all", "no_park"))
        distill.parking = parking if variant in ("all", "no_cache") else None
        row = {"variant": variant, "cache_grad": distill.settings.cache_gan_grad, "parking": bool(distill.parking)}
        for name, step in (("critic", critic_step), ("student", student_step)):
            try:
                if distill.parking is None:  # without parking both models stay on the device
                    for part in parking:
                        part.fetch()
                step()  # warm-up (optimizer state, autotuning)
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                step()
                if cuda:
                    torch.cuda.synchronize()
                row[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
                row[f"{name}_peak_gib"] = gib(torch.cuda.max_memory_allocated()) if cuda else None
            except torch.cuda.OutOfMemoryError:
                row[f"{name}_seconds"] = row[f"{name}_peak_gib"] = "OOM"
                row[f"{name}_allocated_at_oom_gib"] = gib(torch.cuda.memory_allocated())
                optimizer.zero_grad(set_to_none=True)
                distill.critic_optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
        rows.append(row)
        print(row, flush=True)
        _write(args.out, rows, resident, built, args)
    print("| variant | Cache Grad | parking | critic step s | critic peak GiB | student step s | student peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['cache_grad']} | {r['parking']} | {r['critic_seconds']} | "
            f"{r['critic_peak_gib']} | {r['student_seconds']} | {r['student_peak_gib']} |"
        )


def _write(path: str, rows: list[dict], resident: int, built: float, args) -> None:
    meta = dict(
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        torch=torch.__version__,
        lora_rank=args.rank,
        resident_gib=gib(resident),
        build_seconds=round(built, 1),
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(sys.argv),
    )
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
