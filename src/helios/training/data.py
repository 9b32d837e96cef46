"""Offloaded training data: one safetensors file per video holding its per-chunk latents and caption embedding.

``latents`` (S, C, 9, h, w): the video cut into S consecutive 33-frame chunks, each encoded on its
own (as the released models were trained); ``text`` (L, D): the caption's embedding, or (S, L, D): one
per section (a caption true to each chunk). A training sample picks a video and a section k: the target
is section k, the history the 19 latent frames before it in a zero-padded sequence, the anchor the
video's first latent (zero when k = 0). ``first_section`` is the share of samples taken at k = 0, where
the model has nothing but the caption to go on (uniform over the sections when None).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

INDEX_NAME = "index.json"


@dataclass
class Batch:
    target: torch.Tensor  # (B, C, 9, h, w) clean latents of the section to learn
    history: torch.Tensor  # (B, C, 19, h, w) the window before it
    anchor: torch.Tensor  # (B, C, 1, h, w)
    text: torch.Tensor  # (B, L, D)
    # (B, C, 1, h, w) each target chunk's first frame held still as I2V gives it (shards with "held")
    held: torch.Tensor | None = None

    def to(self, device) -> Batch:
        held = self.held.to(device) if self.held is not None else None
        return Batch(*(t.to(device) for t in (self.target, self.history, self.anchor, self.text)), held)


def curriculum_reach(files: int, step: int, curriculum_steps: int, batch_size: int) -> int:
    """How many of the first ``files`` (ordered easy to hard) training step ``step`` (1-based) draws from when
    a curriculum reaches all of them over ``curriculum_steps``: a growing prefix, never less than a batch."""
    if step >= curriculum_steps:
        return files
    return min(files, max(batch_size, math.ceil(files * step / curriculum_steps)))


class LatentShards:
    """The offloaded files of a folder; samples are drawn with an explicit generator (exact resume)."""

    def __init__(self, folder: str | Path, cache_size: int = 4096):
        self.folder = Path(folder)
        self.cache_size = cache_size  # decoded files kept in memory (the synthetic set fits entirely)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        index = self.folder / INDEX_NAME
        if not index.is_file():
            raise ValueError(f"{self.folder} has no {INDEX_NAME}: run `helios offload` first")
        meta = json.loads(index.read_text())
        if meta.get("kind") == "ode_pairs":
            raise ValueError(f"{self.folder} holds ODE pairs, not latent shards (they train stage 3, phase 'ode')")
        self.entries = meta["files"]
        self.ordered = bool(meta.get("ordered_easy_to_hard"))  # a curriculum's corpus (offload.write_index)
        if not self.entries:
            raise ValueError(f"{index} lists no files")

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A video's latents (S, C, 9, h, w), text, and held first frames (S, C, 1, h, w) or None."""
        if i not in self._cache:
            path = self.folder / self.entries[i]["file"]
            with safe_open(str(path), framework="pt") as f:
                held = f.get_tensor("held").float() if "held" in f.keys() else None
                item = f.get_tensor("latents").float(), f.get_tensor("text").float(), held
            if len(self._cache) < self.cache_size:
                self._cache[i] = item
            return item
        return self._cache[i]

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        history_frames: int = 19,
        first_section: float | None = None,
        reachable: int | None = None,
    ) -> Batch:
        """``reachable``: draw only from the first that many files (a curriculum; None: all)."""
        files = len(self) if reachable is None else min(len(self), reachable)
        if files < 1:
            raise ValueError(f"reachable must leave at least one file to draw from, got {reachable}")
        targets, histories, anchors, texts, helds = [], [], [], [], []
        for _ in range(batch_size):
            video = int(torch.randint(files, (1,), generator=generator))
            latents, text, held = self.load(video)
            sections = latents.shape[0]
            if first_section is None:
                k = int(torch.randint(sections, (1,), generator=generator))
            elif sections == 1 or float(torch.rand((), generator=generator)) < first_section:
                k = 0
            else:
                k = int(torch.randint(1, sections, (1,), generator=generator))
            sequence = latents.permute(1, 0, 2, 3, 4).flatten(1, 2)  # (C, S·9, h, w)
            chunk = latents.shape[2]
            before = sequence[:, : k * chunk]
            pad = torch.zeros(sequence.shape[0], max(0, history_frames - before.shape[1]), *sequence.shape[2:])
            histories.append(torch.cat([pad, before], dim=1)[:, -history_frames:])
            targets.append(latents[k])
            anchors.append(sequence[:, :1] * (1.0 if k > 0 else 0.0))
            texts.append(text[k] if text.dim() == 3 else text)
            helds.append(held[k] if held is not None else None)
        stacked = torch.stack(helds) if all(h is not None for h in helds) else None
        return Batch(torch.stack(targets), torch.stack(histories), torch.stack(anchors), torch.stack(texts), stacked)
