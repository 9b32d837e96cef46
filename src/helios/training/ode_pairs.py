"""ODE pairs for Staged ODE Init (paper §3.4.2): the teacher's pyramid trajectory on real history.

``record_ode_pairs`` takes offloaded latent shards, draws (video, section) windows as stage-1/2
training does — history from the real video, Pure Teacher Forcing — lets the teacher (Mid, with its
CFG sampler) denoise the section from fresh noise, and stores, per pyramid stage, the latent the stage
starts from and the one it ends at. Any few-step DMD schedule of the student lies on the straight
line between the two (the DMD sampler re-noises toward the stage's start), so one recording serves
students of every step count.

One safetensors file per pair: ``stage{k}_start``, ``stage{k}_end`` (C, 9, h_k, w_k), ``history``
(C, 19, h, w), ``anchor`` (C, 1, h, w), ``text`` (L, D); ``index.json`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import HistorySettings, SamplerSettings
from ..model.window import window_frames
from ..sampling.chunk import ChunkSampler
from ..sampling.noise import NoiseDraws, device_randn
from .data import INDEX_NAME, LatentShards
from .objectives import predict_velocity


@dataclass
class OdePairs:
    """A batch of pairs: per stage (B, C, 9, h_k, w_k) starts and ends, and their conditioning."""

    starts: list[torch.Tensor]
    ends: list[torch.Tensor]
    history: torch.Tensor
    anchor: torch.Tensor
    text: torch.Tensor

    def to(self, device) -> OdePairs:
        return OdePairs(
            [t.to(device) for t in self.starts],
            [t.to(device) for t in self.ends],
            self.history.to(device),
            self.anchor.to(device),
            self.text.to(device),
        )


@torch.no_grad()
def record_ode_pairs(
    teacher,
    shards: str | Path,
    out_dir: str | Path,
    sampler: SamplerSettings,
    count: int,
    seed: int = 0,
    history: HistorySettings = HistorySettings(),
    device: str | torch.device = "cpu",
    batch_size: int = 1,
) -> Path:
    """Record ``count`` teacher trajectories (see the module note) into ``out_dir``, ``batch_size``
    chunks per teacher run."""
    if sampler.pyramid_steps is None or sampler.sampler != "unipc":
        raise ValueError("ODE pairs come from a pyramid teacher with the multi-step sampler (a Mid model)")
    data = LatentShards(shards)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    dtype = teacher.dtype
    chunk_sampler = ChunkSampler(sampler, tuple(teacher.config.patch_size), dtype)
    generator = torch.Generator().manual_seed(seed)
    files = []
    for first in range(0, count, batch_size):  # the teacher runs on a batch of chunks at once
        size = min(batch_size, count - first)
        batch = data.sample(size, generator, history_frames=window_frames(history)).to(device)
        text = batch.text.to(dtype)

        def denoise(latents, timestep, embedding, batch=batch):
            return predict_velocity(teacher, latents, timestep, embedding, batch.history, batch.anchor, history, dtype)

        noise = device_randn(batch.target.shape, device, generator)
        trajectory: list[tuple[torch.Tensor, torch.Tensor]] = []
        negative = torch.zeros_like(text) if sampler.uses_cfg else None
        chunk_sampler.sample(denoise, noise, text, negative, NoiseDraws(generator, device), False, trajectory)
        for i in range(size):
            tensors = {"history": batch.history[i], "anchor": batch.anchor[i], "text": batch.text[i]}
            for stage, (start, end) in enumerate(trajectory):
                tensors[f"stage{stage}_start"], tensors[f"stage{stage}_end"] = start[i], end[i]
            name = f"{first + i:06d}.safetensors"
            save_file({k: v.float().cpu().contiguous() for k, v in tensors.items()}, str(out / name))
            files.append(name)
    (out / INDEX_NAME).write_text(json.dumps({"kind": "ode_pairs", "stages": len(trajectory), "files": files}))
    return out


class OdePairShards:
    """A folder written by ``record_ode_pairs``; samples drawn with an explicit generator (exact resume)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        if not index.is_file():
            raise ValueError(
                f"{self.folder} has no {INDEX_NAME}: record ODE pairs first (`helios offload --record-ode`)"
            )
        meta = json.loads(index.read_text())
        if meta.get("kind") != "ode_pairs":
            raise ValueError(f"{self.folder} holds latent shards, not ODE pairs: distill phase 'ode' needs ODE pairs")
        self.files, self.stages = meta["files"], int(meta["stages"])
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self._cache:
            with safe_open(str(self.folder / self.files[i]), framework="pt") as f:
                self._cache[i] = {key: f.get_tensor(key) for key in f.keys()}
        return self._cache[i]

    def sample(self, batch_size: int, generator: torch.Generator) -> OdePairs:
        items = [self.load(int(torch.randint(len(self), (1,), generator=generator))) for _ in range(batch_size)]

        def stack(key: str) -> torch.Tensor:
            return torch.stack([item[key] for item in items])

        return OdePairs(
            [stack(f"stage{k}_start") for k in range(self.stages)],
            [stack(f"stage{k}_end") for k in range(self.stages)],
            stack("history"),
            stack("anchor"),
            stack("text"),
        )
