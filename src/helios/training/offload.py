"""``helios offload``: precompute per-chunk latents and caption embeddings for training.

Reads a manifest (JSON list with ``path`` and ``cap``/``caption`` per video, paths relative to the
manifest), cuts each video into whole chunks (33 frames for the released models), encodes every chunk on its
own with the codec and the caption with the text encoder, and writes one safetensors file per video plus
``index.json``. An entry with a ``timeline`` (``[[start frame, caption], ...]``, as the synthetic world
exports) gets one caption embedding per chunk: the caption in force at the chunk's first frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..config import HistorySettings, read_json
from ..encoders.protocols import TextEncoder, VideoCodec, held_image_latent
from ..media import read_video, to_model_pixels
from .data import INDEX_NAME


def section_captions(entry: dict, sections: int, chunk_frames: int) -> str | list[str]:
    """A manifest entry's caption, or with a timeline, the caption in force at each chunk's start."""
    caption = entry.get("cap") or entry["caption"]
    timeline = entry.get("timeline")
    if not timeline:
        return caption
    try:
        changes = sorted((int(frame), str(text)) for frame, text in timeline)
    except (TypeError, ValueError):
        raise ValueError("'timeline' must be a list of [start frame, caption] pairs") from None
    captions = []
    for k in range(sections):
        in_force = [text for frame, text in changes if frame <= k * chunk_frames]
        captions.append(in_force[-1] if in_force else caption)
    return captions


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest not found: {path}")
    entries = read_json(path)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty JSON list of videos")
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "path" not in entry or not (entry.get("cap") or entry.get("caption")):
            raise ValueError(f"{path}: entry {n} needs 'path' and 'cap' (or 'caption')")
    return entries


@torch.no_grad()
def encode_video(
    frames,
    caption: str | list[str],
    codec: VideoCodec,
    text_encoder: TextEncoder,
    height: int,
    width: int,
    history: HistorySettings = HistorySettings(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames (T, H, W, 3) → per-chunk latents (S, C, 9, h, w) and the caption embedding (L, D),
    or given one caption per chunk (a list), one embedding per chunk (S, L, D)."""
    chunk_frames = history.chunk_video_frames(codec.temporal_factor)
    chunks = len(frames) // chunk_frames
    if chunks == 0:
        raise ValueError(f"{len(frames)} frames, fewer than one {chunk_frames}-frame chunk")
    if isinstance(caption, list) and len(caption) < chunks:
        raise ValueError(f"{len(caption)} section captions for {chunks} chunks")
    pixels = to_model_pixels(frames[: chunks * chunk_frames], height, width)
    latents = torch.stack(
        [codec.encode(pixels[:, :, i * chunk_frames : (i + 1) * chunk_frames])[0] for i in range(chunks)]
    )
    if isinstance(caption, list):
        return latents, text_encoder.encode(caption[:chunks])
    return latents, text_encoder.encode([caption])[0]


def held_first_frames(
    frames, codec: VideoCodec, height: int, width: int, history: HistorySettings = HistorySettings()
) -> torch.Tensor:
    """(S, C, 1, h, w): per chunk, the newest history latent I2V gives a still image of the chunk's first
    frame (``condition_on_image``: the image held for a chunk, its last latent), so training can build
    the history inference builds (``HistoryDropSettings.still_image``)."""
    chunk_frames = history.chunk_video_frames(codec.temporal_factor)
    chunks = len(frames) // chunk_frames
    pixels = to_model_pixels(frames[: chunks * chunk_frames], height, width)
    firsts = [pixels[:, :, i * chunk_frames : i * chunk_frames + 1] for i in range(chunks)]
    return torch.cat([held_image_latent(codec, first, chunk_frames) for first in firsts])


def write_shard(
    folder: Path,
    name: str,
    latents: torch.Tensor,
    text: torch.Tensor,
    caption: str,
    source: str,
    held: torch.Tensor | None = None,
) -> dict:
    tensors = {"latents": latents.half().cpu().contiguous(), "text": text.float().cpu().contiguous()}
    if held is not None:
        tensors["held"] = held.half().cpu().contiguous()
    save_file(tensors, str(folder / name), metadata={"caption": caption, "source": source})
    return {"file": name, "caption": caption, "sections": int(latents.shape[0])}


def write_index(folder: Path, files: list[dict], height: int, width: int, ordered: bool = False) -> None:
    """``ordered``: the files go from easy to hard, as a curriculum (``TrainConfig.curriculum_steps``) needs."""
    index = {"files": files, "height": height, "width": width} | ({"ordered_easy_to_hard": True} if ordered else {})
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=1))


def offload(
    manifest: str | Path,
    out_dir: str | Path,
    codec: VideoCodec,
    text_encoder: TextEncoder,
    height: int,
    width: int,
    history: HistorySettings = HistorySettings(),
    held: bool = False,
) -> Path:
    """Encode every video of ``manifest`` into ``out_dir``; ``held``: also each chunk's
    ``held_first_frames`` (one more encode per chunk)."""
    manifest = Path(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    chunk_frames = history.chunk_video_frames(codec.temporal_factor)
    for n, entry in enumerate(read_manifest(manifest)):
        frames, _ = read_video(manifest.parent / entry["path"])
        caption = entry.get("cap") or entry["caption"]
        try:
            captions = section_captions(entry, len(frames) // chunk_frames, chunk_frames)
            latents, text = encode_video(frames, captions, codec, text_encoder, height, width, history)
        except ValueError as exc:
            raise ValueError(f"{entry['path']}: {exc}") from None
        still = held_first_frames(frames, codec, height, width, history) if held else None
        files.append(write_shard(out, f"{n:06d}.safetensors", latents, text, caption, str(entry["path"]), still))
    write_index(out, files, height, width)
    return out
