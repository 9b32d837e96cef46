"""Run under torchrun (2 gloo processes) with config files: FSDP2 runs started from model folders (a
Helios one, or a Wan2.1 one: ``wan:``) on the meta device, and DDP runs through ``helios train`` (one
launch for all: each launch costs three interpreter starts). Writes one JSON line (rank 0): per FSDP
config, whether every weight equals the folder's (Wan: the memory patches made from its patch
embedding), the LoRA start, and the losses of a few steps; per DDP config, the command's exit code; per
context-parallel config, the losses (its run folder holds the rest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from helios.config import TrainConfig
from helios.model.checkpoint import StoredWeights
from helios.model.memory import memory_patch_tensors
from helios.training.sharded_start import new_lora_tensor
from helios.training.trainer import Trainer, _full


def main() -> None:
    results = [run(path) for path in sys.argv[1:]]
    if dist.get_rank() == 0:
        sys.stdout.write(json.dumps(results) + "\n")
    dist.destroy_process_group()


def run(path: str) -> dict | None:
    config = TrainConfig.from_file(path)
    if config.distributed == "ddp":  # through the command line, as users launch it
        from helios.cli import main as helios

        return dict(exit_code=helios(["train", "--config", path]))
    if config.context_parallel:  # compared with one process by the test, from its run folder
        return dict(losses=[r["loss"] for r in Trainer(config).train()])
    return check(config)


def check(config: TrainConfig) -> dict | None:
    trainer = Trainer(config)
    stored = dict(StoredWeights(Path(config.transformer.removeprefix("wan:"))).tensors())  # (canonical names)
    if "patch_short.weight" not in stored:  # a Wan folder
        stored |= memory_patch_tensors(stored["patch_embedding.weight"], stored["patch_embedding.bias"])
    full = {name: _full(p).detach().cpu() for name, p in trainer.model.state_dict().items()}
    sharded = all(hasattr(p, "device_mesh") for p in trainer.model.parameters())
    weights_equal = all(torch.equal(full[n], stored[n.replace(".base_layer.", ".")]) for n in full if "lora_" not in n)
    lora_b_zero = all(full[n].abs().sum() == 0 for n in full if "lora_B" in n)
    lora_a = torch.cat([full[n].flatten() for n in sorted(full) if "lora_A" in n])
    gathered = [torch.empty_like(lora_a) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, lora_a)
    losses = [r["loss"] for r in trainer.train()]
    if dist.get_rank() == 0:
        return dict(
            sharded=sharded,
            weights_equal=weights_equal,
            # drawn by name (sharded_start), not by the plain start's seeded peft initialisation
            lora_a_by_name=all(
                torch.equal(full[n], new_lora_tensor(n, full[n].shape, config.lora_rank)) for n in full if "lora_A" in n
            ),
            lora_b_zero=bool(lora_b_zero),
            lora_a_same_on_ranks=all(torch.equal(g, lora_a) for g in gathered),
            lora_a_std=float(lora_a.std()),
            losses=losses,
        )
    return None


if __name__ == "__main__":
    main()
