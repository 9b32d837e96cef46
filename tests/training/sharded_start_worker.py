"""Run under torchrun (2 gloo processes) with a config file: an FSDP2 run started from a model folder on
the meta device. Writes one JSON line (rank 0): whether every weight equals the folder's, the LoRA
start, and the losses of a few steps."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from helios.config import TrainConfig
from helios.training.sharded_start import new_lora_tensor
from helios.training.trainer import Trainer, _full


def main() -> None:
    config = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
    trainer = Trainer(config)
    stored = load_file(f"{config.transformer}/diffusion_pytorch_model.safetensors")
    full = {name: _full(p).detach().cpu() for name, p in trainer.model.state_dict().items()}
    sharded = all(hasattr(p, "device_mesh") for p in trainer.model.parameters())
    weights_equal = all(torch.equal(full[n], stored[n.replace(".base_layer.", ".")]) for n in full if "lora_" not in n)
    lora_b_zero = all(full[n].abs().sum() == 0 for n in full if "lora_B" in n)
    lora_a = torch.cat([full[n].flatten() for n in sorted(full) if "lora_A" in n])
    gathered = [torch.empty_like(lora_a) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, lora_a)
    losses = [r["loss"] for r in trainer.train()]
    if dist.get_rank() == 0:
        result = dict(
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
        sys.stdout.write(json.dumps(result) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
