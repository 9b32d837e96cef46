"""Processes started by torchrun: join the process group and pick this rank's device."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_ranks() -> int:
    """How many processes torchrun started for this job (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device) -> torch.device:
    """Initialise the default process group (NCCL between GPUs, gloo on CPUs) and return this rank's
    device: on CUDA the GPU of its local rank, each process its own card."""
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"rank {local} has no GPU: {torch.cuda.device_count()} visible for {launched_ranks()} processes"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
