"""Building a :class:`HeliosPipeline` from a diffusers-layout Helios folder or the embedded default model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from ..config import SamplerSettings, ShiftSettings, sampler_preset
from ..model.transformer import HeliosTransformer

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"


class ModelFolderError(ValueError):
    """A model folder that is missing or incomplete; the message names what is wrong."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from None


def sampler_from_configs(model_index: dict, scheduler: dict) -> SamplerSettings:
    """The released model's sampler, from ``model_index.json`` and ``scheduler_config.json``."""
    pyramid = model_index.get("_class_name") != "HeliosPipeline" or scheduler.get("stages", 3) > 1
    distilled = bool(model_index.get("is_distilled")) or scheduler.get("scheduler_type") == "dmd" or (
        scheduler.get("_class_name") == "HeliosDMDScheduler"
    )
    if distilled:
        settings = sampler_preset("helios-distilled")
    elif pyramid:
        settings = sampler_preset("helios-mid")
        settings = replace(settings, cfg_zero_star=bool(model_index.get("is_cfg_zero_star", True)))
    else:
        settings = sampler_preset("helios-base")
    if scheduler:
        kind = scheduler.get("time_shift_type", settings.shift.kind) if scheduler.get("use_dynamic_shifting") else None
        settings = replace(settings, shift=ShiftSettings(
            kind=kind,
            base_seq_len=scheduler.get("base_image_seq_len", 256),
            max_seq_len=scheduler.get("max_image_seq_len", 4096),
            base_shift=scheduler.get("base_shift", 0.5),
            max_shift=scheduler.get("max_shift", 1.15),
        ))
    return settings


def load_pipeline_folder(cls, root: Path, dtype: torch.dtype, device: torch.device, preset: str | None):
    from ..encoders.text import UMT5TextEncoder
    from ..encoders.video import WanVideoCodec

    root = root.expanduser()
    if not root.is_dir():
        raise ModelFolderError(f"model folder not found: {root}")
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise ModelFolderError(f"{root} is not a Helios pipeline folder: model_index.json is missing")
    missing = [sub for sub in ("transformer", "vae", "text_encoder", "tokenizer") if not (root / sub).is_dir()]
    if missing:
        raise ModelFolderError(f"{root} lacks {', '.join(m + '/' for m in missing)}")
    model_index = _read_json(index_path)
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    settings = sampler_preset(preset) if preset else sampler_from_configs(model_index, scheduler)
    transformer = HeliosTransformer.from_pretrained(root, dtype=dtype, device=device)
    text_encoder = UMT5TextEncoder.from_pretrained(root, dtype=dtype, device=device)
    codec = WanVideoCodec.from_pretrained(root, dtype=torch.float32, device=device)
    return cls(transformer, text_encoder, codec, sampler=settings)


def load_default_pipeline(cls, device: torch.device, preset: str | None):
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        raise ModelFolderError(
            "no default model is bundled with this version of helios yet (it comes with the synthetic-world "
            "model); pass the path of a Helios model folder, e.g. a downloaded BestWishYsh/Helios-Distilled"
        )
    raise ModelFolderError(f"the bundled default model in {DEFAULT_MODEL_DIR} cannot be loaded by this version")
