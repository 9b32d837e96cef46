"""One LoRA training step of the full 14B Helios transformer at 384×640 (random weights).

Stage 1 (flow matching with the full history window: short 2 + mid 2 + long 16 latent frames) and
stage 2 (pyramid flow matching: one sample per pyramid stage, three forwards), batch 1 and 2, LoRA on
every linear layer (rank 128 as the official stage-1 configs) plus fully trained memory patches,
gradient checkpointing on, bf16 weights, AdamW. Reports the mean time of ``--steps`` steps (after one
warm-up step) and peak GPU memory.

Under torchrun the model is built on the meta device, sharded with FSDP2 (one unit per block, bf16
as on one GPU), and only this rank's shards get storage and random values —
no rank ever holds the whole model; each rank trains on its own batch, so throughput is
ranks × batch / step time. With ``--context-parallel`` every rank trains on the same batch, each on its
share of the token sequence (Ulysses, as ``TrainConfig.context_parallel``): the activations split too, and
throughput is batch / step time. ``--offload-activations`` keeps the tensors saved for the backward in
pinned host memory (``TrainConfig.offload_activations``).

    python benchmarks/train_step_14b.py --out train_step.json
    torchrun --nproc-per-node 2 benchmarks/train_step_14b.py --out train_step_2gpu.json
    torchrun --nproc-per-node 2 benchmarks/train_step_14b.py --context-parallel --out train_step_2gpu_cp.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from helios import HeliosTransformer
from helios.config import HELIOS_14B, TINY, HistorySettings
from helios.model.context_parallel import enable_context_parallel
from helios.parallel.launch import is_main, join, launched_ranks, leave
from helios.sampling.schedules import PyramidConstants
from helios.training.objectives import flow_matching_loss, pyramid_flow_matching_loss
from helios.training.trainer import add_lora, saved_tensors_on_host


def build(device: torch.device, rank: int, config=HELIOS_14B) -> HeliosTransformer:
    """The model with LoRA on ``device``; under torchrun built on meta and sharded (see the docstring)."""
    sharded = launched_ranks() > 1
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta" if sharded else device):
            model = HeliosTransformer.from_config(config).cast(torch.bfloat16)
            model = add_lora(model, rank, rank)
    finally:
        torch.set_default_dtype(torch.float32)
    for conv in (model.patch_short, model.patch_mid, model.patch_long):
        conv.requires_grad_(True)
    model.enable_gradient_checkpointing(True)
    if sharded:
        shard_randomly(model, device)
    return model.train()


def shard_randomly(model: HeliosTransformer, device: torch.device) -> None:
    """FSDP2 units per block and the root, storage for this rank's shards only, random values
    (speed and memory do not depend on them; LoRA B is random too so every gradient is non-trivial).
    Every parameter is bf16 already (LoRA included), as on one GPU: no mixed-precision policy, whose
    input casts are skipped when a checkpointed block recomputes (different dtypes, a CheckpointError)."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    model.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(torch.distributed.get_rank())
    with torch.no_grad():
        for param in model.parameters():
            param.to_local().normal_(0, 0.02, generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="train_step_14b.json")
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--rows", default="1x1,1x2,2x1,2x2", help="stage x batch per rank, comma-separated")
    parser.add_argument("--tiny", action="store_true", help="the tiny configuration at a small size (CPU check)")
    parser.add_argument("--context-parallel", action="store_true", help="ranks share each sample's tokens")
    parser.add_argument("--offload-activations", action="store_true", help="saved tensors wait in host memory")
    parser.add_argument("--steps", type=int, default=1, help="timed steps after the warm-up (their mean is reported)")
    args = parser.parse_args()
    ranks = launched_ranks()
    device = torch.device("cpu" if args.tiny else "cuda")
    if ranks > 1:
        device = join(device)
    config = TINY if args.tiny else HELIOS_14B
    height, width, tokens = (8, 8, 4) if args.tiny else (48, 80, 512)
    model = build(device, args.rank, config)
    context_parallel = args.context_parallel and ranks > 1
    if context_parallel:
        enable_context_parallel(model, split_batch=False)
    data_ranks = 1 if context_parallel else ranks  # ranks that train on samples of their own
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    cuda = device.type == "cuda"
    weights = torch.cuda.memory_allocated(device) / 2**30 if cuda else 0.0
    trainable_count = sum(p.numel() for p in trainable) * (ranks if ranks > 1 else 1)  # (shards)
    if is_main():
        print(f"LoRA r{args.rank}: ~{trainable_count / 1e6:.0f} M trainable, {weights:.1f} GiB on rank 0", flush=True)
    settings, constants = HistorySettings(), PyramidConstants()
    channels, text_dim = config.in_channels, config.text_dim
    rows = []
    for row in args.rows.split(","):
        stage, batch = (int(v) for v in row.split("x"))
        g = torch.Generator().manual_seed(0)
        data_rank = torch.distributed.get_rank() if ranks > 1 and not context_parallel else 0
        inputs = torch.Generator(device).manual_seed(1 + data_rank)  # one sample per data-parallel rank

        def draw(*shape):
            return torch.randn(*shape, device=device, generator=inputs)

        target, history = draw(batch, channels, 9, height, width), draw(batch, channels, 19, height, width)
        anchor, text = draw(batch, channels, 1, height, width), draw(batch, tokens, text_dim)
        scale = ranks if context_parallel else 1  # token shares add up to the gradient (FSDP averages)

        def step():
            with saved_tensors_on_host(args.offload_activations):
                if stage == 1:
                    loss = flow_matching_loss(model, target, history, anchor, text, settings, g, dtype=torch.bfloat16)
                else:
                    loss = pyramid_flow_matching_loss(
                        model, target, history, anchor, text, settings, g, constants, dtype=torch.bfloat16
                    )
            optimizer.zero_grad(set_to_none=True)
            (loss * scale).backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            return loss

        step()  # warm-up (also allocates the optimizer state)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.steps
        rows.append(
            dict(
                stage=stage,
                batch=batch,
                ranks=ranks,
                step_seconds=seconds,
                context_parallel=context_parallel,
                offload_activations=args.offload_activations,
                samples_per_second=data_ranks * batch / seconds,
                peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0,
                peak_host_rss_gib=peak_rss_gib(),
                loss=loss.item(),
            )
        )
        if is_main():
            print(rows[-1], flush=True)
    if is_main():
        meta = dict(
            device=torch.cuda.get_device_name() if cuda else "cpu",
            torch=torch.__version__,
            ranks=ranks,
            sharding="FSDP2 from the meta device" if ranks > 1 else "none",
            context_parallel=context_parallel,
            offload_activations=args.offload_activations,
            lora_rank=args.rank,
            timed_steps=args.steps,
            weights_gib_rank0=weights,
            date=time.strftime("%Y-%m-%d"),
            command=" ".join(sys.argv),
        )
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        columns = ("ranks", "context_parallel", "offload_activations", "stage", "batch")
        print("| " + " | ".join(columns) + " | step s | samples/s | peak GPU GiB per rank | peak RSS GiB |")
        print("|---" * (len(columns) + 4) + "|")
        for r in rows:
            figures = f"{r['step_seconds']:.2f} | {r['samples_per_second']:.3f} | {r['peak_gib']:.1f} | "
            print("| " + " | ".join(str(r[c]) for c in columns) + f" | {figures}{r['peak_host_rss_gib']:.1f} |")
    leave()


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


if __name__ == "__main__":
    main()
