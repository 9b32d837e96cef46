"""Multi-term memory patchification and the token segments it produces (paper §3.3.1).

The sequence the blocks see is ``[long | mid | short | noisy]``. The history parts are patchified
with ever larger kernels (short (1,2,2), mid (2,4,4), long (4,8,8) for patch size (1,2,2)), so 19
history frames plus the first-frame anchor cost about an eighth of the tokens they would uncompressed.
Mid and long reuse the *short* part's token grid for their RoPE tables, pooled by 2 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .context_parallel import SequenceShards
from .rope import RopeCache, RopeTable, _pad_to_multiple
from .window import HistoryInputs


@dataclass(frozen=True)
class TokenSegments:
    """Where each part of the sequence lies: ``history`` tokens first, then ``current`` (noisy) ones."""

    history: int
    current: int
    grid: tuple[int, int, int]  # post-patch (T, H, W) of the noisy part
    # Context parallelism: this rank holds ``history`` + ``current`` tokens of the sequence that
    # ``shards`` describes (model/context_parallel.py); None: the whole sequence is here.
    shards: SequenceShards | None = None

    @property
    def total(self) -> int:
        return self.history + self.current

    def shard(self, shards: SequenceShards) -> TokenSegments:
        """This rank's part: its run of the sequence, history first, then noisy tokens."""
        history = min(max(self.history - shards.start, 0), shards.local)
        return TokenSegments(history, shards.local - history, self.grid, shards)


def as_index_rows(indices: torch.Tensor, batch: int) -> torch.Tensor:
    """Frame indices as (1 or B, T); a 1-D tensor is one row shared by the batch."""
    if indices.ndim == 1:
        indices = indices[None]
    if indices.ndim != 2 or indices.shape[0] not in (1, batch):
        raise ValueError(f"frame indices must be (T,), (1, T) or ({batch}, T); got shape {tuple(indices.shape)}")
    return indices


def patchify(conv: nn.Conv3d, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Conv-patchify (B, C, T, H, W) into tokens (B, L, D), t-major; also returns the token grid."""
    padded = _pad_to_multiple(latents, conv.kernel_size)
    tokens = conv(padded.to(conv.weight.dtype))
    grid = tuple(tokens.shape[2:])
    return tokens.flatten(2).transpose(1, 2), grid


def memory_patches(in_channels: int, dim: int, patch_size: tuple[int, int, int]) -> tuple[nn.Conv3d, ...]:
    """The short, mid and long history patch embeddings (kernels ×1, ×2, ×4 the patch size)."""
    convs = []
    for factor in (1, 2, 4):
        kernel = tuple(factor * p for p in patch_size)
        convs.append(nn.Conv3d(in_channels, dim, kernel_size=kernel, stride=kernel))
    return tuple(convs)


def embed_history(
    patches: nn.Module,
    history: HistoryInputs,
    batch: int,
    rope: RopeCache,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[RopeTable]]:
    """Tokens and RoPE tables of the history parts, in sequence order long, mid, short."""
    history.validate()
    if history.short is None:
        return [], []
    tokens, tables = [], []
    short_tokens, (_, h1, w1) = patchify(patches.patch_short, history.short)
    short_table = rope.table(as_index_rows(history.indices_short, batch), h1, w1, device)
    for latents, indices, conv, pool in (
        (history.long, history.indices_long, patches.patch_long, 4),
        (history.mid, history.indices_mid, patches.patch_mid, 2),
    ):
        if latents is None:
            continue
        part_tokens, _ = patchify(conv, latents)
        tokens.append(part_tokens)
        tables.append(rope.table(as_index_rows(indices, batch), h1, w1, device, pool=pool))
    tokens.append(short_tokens)
    tables.append(short_table)
    return tokens, tables


def init_memory_from_patch_embedding(patches: nn.Module, patch_embedding: nn.Conv3d) -> None:
    """Initialise the history patches as "average-pool, then patch-embed" (paper §3.3.1).

    Call this **after** the pretrained weights are loaded (the official code does it before, so the
    copies came from random weights).
    """
    tensors = memory_patch_tensors(patch_embedding.weight.detach(), patch_embedding.bias.detach())
    with torch.no_grad():
        for name, value in tensors.items():
            patches.get_parameter(name).copy_(value)


PATCH_FACTORS = {"short": 1, "mid": 2, "long": 4}


def memory_patch_tensors(weight: torch.Tensor, bias: torch.Tensor) -> dict[str, torch.Tensor]:
    """The history patches' weights as "average-pool, then patch-embed" of a patch embedding's
    ``weight`` and ``bias``: each kernel tap spread over factor³ taps, divided by factor³."""
    tensors = {}
    for part, factor in PATCH_FACTORS.items():
        expanded = weight.repeat_interleave(factor, 2).repeat_interleave(factor, 3).repeat_interleave(factor, 4)
        tensors[f"patch_{part}.weight"] = expanded / factor**3
        tensors[f"patch_{part}.bias"] = bias.clone()
    return tensors
