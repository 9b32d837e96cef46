"""``helios offload``: precompute per-chunk latents and caption embeddings for training.

Reads a manifest (JSON list with ``path`` and ``cap``/``caption`` per video, paths relative to the
manifest), cuts each video into whole 33-frame chunks, encodes every chunk on its own with the codec
and the caption with the text encoder, and writes one safetensors file per video plus ``index.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..encoders.protocols import TextEncoder, VideoCodec
from ..media import read_video, to_model_pixels
from .data import INDEX_NAME


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty JSON list of videos")
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "path" not in entry or not (entry.get("cap") or entry.get("caption")):
            raise ValueError(f"{path}: entry {n} needs 'path' and 'cap' (or 'caption')")
    return entries


@torch.no_grad()
def offload(manifest: str | Path, out_dir: str | Path, codec: VideoCodec, text_encoder: TextEncoder,
            height: int, width: int, chunk_latent_frames: int = 9) -> Path:
    manifest = Path(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunk_frames = (chunk_latent_frames - 1) * codec.temporal_factor + 1
    files = []
    for n, entry in enumerate(read_manifest(manifest)):
        frames, _ = read_video(manifest.parent / entry["path"])
        chunks = len(frames) // chunk_frames
        if chunks == 0:
            raise ValueError(f"{entry['path']}: {len(frames)} frames, fewer than one {chunk_frames}-frame chunk")
        pixels = to_model_pixels(frames[: chunks * chunk_frames], height, width)
        latents = torch.stack([
            codec.encode(pixels[:, :, i * chunk_frames : (i + 1) * chunk_frames])[0] for i in range(chunks)
        ])  # (S, C, 9, h, w)
        caption = entry.get("cap") or entry["caption"]
        text = text_encoder.encode([caption])[0]
        name = f"{n:06d}.safetensors"
        save_file({"latents": latents.half().contiguous(), "text": text.float().contiguous()}, str(out / name),
                  metadata={"caption": caption, "source": str(entry["path"])})
        files.append({"file": name, "caption": caption, "sections": chunks})
    (out / INDEX_NAME).write_text(json.dumps({"files": files, "height": height, "width": width}, indent=1))
    return out
