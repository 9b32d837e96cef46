"""Starting FSDP2 training without ever building the whole model on a rank.

The plain start builds the full fp32 model on every rank and moves it to its GPU before sharding —
about 57 GB per rank for 14B, on the device and in host memory. Here the model (LoRA adapters
included) is built on the meta device, sharded, given storage for this rank's shards only, and filled
one tensor at a time: each weight is read from the folder's safetensors (memory-mapped), cut to this
rank's shard and copied; new LoRA weights are drawn per tensor from a generator seeded by its name, so
every rank draws the same full tensor and keeps its own part. Peak host memory is one tensor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from ..model.checkpoint import (
    MEMORY_PATCH_KEYS,
    WAN_CLASS_NAME,
    StoredWeights,
    check_keys,
    read_model_config,
    wan_folder_config,
)
from ..model.memory import memory_patch_tensors
from ..model.transformer import HeliosTransformer


def stored_name(name: str) -> str:
    """The checkpoint key of a model tensor (peft moves a wrapped layer's weight to ``base_layer``)."""
    return name.replace(".base_layer.", ".")


def new_lora_tensor(name: str, shape: torch.Size, rank: int) -> torch.Tensor:
    """peft's "gaussian" start: lora_A ~ N(0, 1/r), lora_B = 0 — drawn identically on every rank."""
    if "lora_B" in name:
        return torch.zeros(shape)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator) / rank


def build_sharded(
    folder: str | Path,
    device: torch.device,
    prepare: Callable[[nn.Module], nn.Module],
    shard: Callable[[nn.Module], nn.Module],
    lora_rank: int | None,
) -> HeliosTransformer:
    """The transformer of ``folder`` — a Helios folder, or a Wan2.1 T2V one (``wan:`` starts: its
    memory patches, which Wan lacks, are made from the stored patch embedding, as ``from_wan`` does) —
    ``prepare``d (LoRA, checkpointing) and ``shard``ed on the meta device, then filled shard by shard
    on ``device``."""
    folder, data = read_model_config(folder)
    from_wan = data.get("_class_name") == WAN_CLASS_NAME
    with torch.device("meta"):
        base = (
            HeliosTransformer(wan_folder_config(folder, data))
            if from_wan
            else HeliosTransformer.build_from_config(data)
        )
        model = prepare(base)
    shard(model)
    model.to_empty(device=device)
    stored = StoredWeights(folder)
    state = model.state_dict(keep_vars=True)
    by_stored_name = {stored_name(n): t for n, t in state.items() if "lora_" not in n}
    expected = {n: tuple(t.shape) for n, t in by_stored_name.items()}
    if from_wan:
        expected = {n: shape for n, shape in expected.items() if n not in MEMORY_PATCH_KEYS}
    check_keys(expected, stored.shapes(), str(folder))
    with torch.no_grad():
        patch_embedding = {}
        for name, value in stored.tensors():
            fill_shard(by_stored_name[name], value)
            if name.startswith("patch_embedding."):
                patch_embedding[name] = value
        if from_wan:
            made = memory_patch_tensors(
                patch_embedding["patch_embedding.weight"], patch_embedding["patch_embedding.bias"]
            )
            for name, value in made.items():
                fill_shard(by_stored_name[name], value)
        for name, tensor in state.items():
            if "lora_" in name:
                fill_shard(tensor, new_lora_tensor(name, tensor.shape, lora_rank or 1))
    return model


def fill_shard(target: torch.Tensor, value: torch.Tensor) -> None:
    """Copy ``value`` (the whole tensor) into ``target``: this rank's shard of it for an FSDP2 DTensor."""
    if hasattr(target, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        local = distribute_tensor(value.to(target.dtype), target.device_mesh, target.placements, src_data_rank=None)
        target.to_local().copy_(local.to_local())
    else:
        target.copy_(value.to(target.dtype))
