"""Building a :class:`HeliosPipeline` from a diffusers-layout Helios folder or the embedded default model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import SamplerSettings, ShiftSettings, read_json, sampler_preset
from ..model.transformer import HeliosTransformer
from .drift import DriftSettings

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"  # the Distilled default model
# Names of the embedded models (a folder of that name in the working directory wins): the default, Distilled
# from its teacher, and the Mid teacher, which shares the default's codec, text encoder and drift thresholds.
EMBEDDED_MODELS = {"default": DEFAULT_MODEL_DIR, "default-mid": DEFAULT_MODEL_DIR / "mid"}
PARTS_FROM = "parts_from"  # model_index key: the folder (relative) holding the parts this one does not have
WORLD_PIPELINE = "HeliosWorldPipeline"  # model_index class of models trained on the synthetic world
DRIFT_FILE = "drift.json"  # adaptive-sampling thresholds calibrated for the model's codec


class ModelFolderError(ValueError):
    """A model folder that is missing or incomplete; the message names what is wrong."""


def _read_json(path: Path) -> dict:
    try:
        return read_json(path)
    except ValueError as exc:
        raise ModelFolderError(str(exc)) from None


def _read_object(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path} is missing")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def sampler_from_configs(model_index: dict, scheduler: dict) -> SamplerSettings:
    """The released model's sampler, from ``model_index.json`` and ``scheduler_config.json``."""
    pyramid = model_index.get("_class_name") != "HeliosPipeline" or scheduler.get("stages", 3) > 1
    distilled = (
        bool(model_index.get("is_distilled"))
        or scheduler.get("scheduler_type") == "dmd"
        or (scheduler.get("_class_name") == "HeliosDMDScheduler")
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
        settings = replace(
            settings,
            shift=ShiftSettings(
                kind=kind,
                base_seq_len=scheduler.get("base_image_seq_len", 256),
                max_seq_len=scheduler.get("max_image_seq_len", 4096),
                base_shift=scheduler.get("base_shift", 0.5),
                max_shift=scheduler.get("max_shift", 1.15),
            ),
        )
    return settings


def model_folder(path: str | Path) -> Path:
    """The folder ``path`` names: a folder, or one of the embedded models' names."""
    folder = Path(path).expanduser()
    if not folder.exists() and str(path) in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[str(path)]
    return folder


def load_pipeline_folder(cls, root: Path, dtype: torch.dtype, device: torch.device, preset: str | None):
    from ..encoders.text import UMT5TextEncoder
    from ..encoders.video import WanVideoCodec

    root = model_folder(root)
    if not root.is_dir():
        names = ", ".join(EMBEDDED_MODELS)
        raise ModelFolderError(f"model folder not found: {root} (the embedded models are named {names})")
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise ModelFolderError(f"{root} is not a Helios pipeline folder: model_index.json is missing")
    if _read_json(index_path).get("_class_name") == WORLD_PIPELINE:
        return load_world_folder(cls, root, device, preset)
    model_index = _read_json(index_path)
    missing = [sub for sub in ("transformer", "vae", "text_encoder", "tokenizer") if not (root / sub).is_dir()]
    if missing:
        raise ModelFolderError(f"{root} lacks {', '.join(m + '/' for m in missing)}")
    scheduler_path = root / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path) if scheduler_path.is_file() else {}
    settings = sampler_preset(preset) if preset else sampler_from_configs(model_index, scheduler)
    transformer = HeliosTransformer.from_pretrained(root, dtype=dtype, device=device)
    text_encoder = UMT5TextEncoder.from_pretrained(root, dtype=dtype, device=device)
    codec = WanVideoCodec.from_pretrained(root, dtype=torch.float32, device=device)
    return cls(transformer, text_encoder, codec, sampler=settings)


def load_world_folder(cls, root: Path, device: torch.device, preset: str | None):
    """A model trained by this project on the synthetic world: its own codec and text encoder."""
    from ..config import HistorySettings
    from ..encoders.world_codec import WorldCodec
    from ..encoders.world_text import WorldTextEncoder

    index = _read_object(root / "model_index.json")
    parts = root
    if PARTS_FROM in index:  # a variant sharing another folder's codec, text encoder and drift thresholds
        parts = (root / str(index[PARTS_FROM])).resolve()
        if not (parts / "model_index.json").is_file():
            raise ModelFolderError(f"{root / 'model_index.json'}: {PARTS_FROM} names {parts}, not a model folder")

    def part(name: str) -> Path:  # the folder's own part, else the shared one
        return root / name if (root / name).exists() else parts / name

    for folder in (root / "transformer", part("codec")):  # (the transformer is never shared)
        if not folder.is_dir():
            raise ModelFolderError(f"{root} lacks {folder.name}/")
    missing = [key for key in ("height", "width") if not isinstance(index.get(key), int) or index[key] < 1]
    if missing:
        raise ModelFolderError(f"{root / 'model_index.json'} needs a positive integer {' and '.join(missing)}")
    try:
        sampler_values = dict(_read_object(root / "sampler.json"))
        shift = ShiftSettings(**sampler_values.pop("shift", {}))
        if sampler_values.get("pyramid_steps") is not None:
            sampler_values["pyramid_steps"] = tuple(sampler_values["pyramid_steps"])
        settings = sampler_preset(preset) if preset else SamplerSettings(**sampler_values, shift=shift)
        history = HistorySettings(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in index.get("history", {}).items()}
        )
        text = WorldTextEncoder(**_read_object(part("text_encoder.json")))
    except (TypeError, ValueError) as exc:
        raise ModelFolderError(f"{root}: invalid settings ({exc})") from None
    transformer = HeliosTransformer.from_pretrained(root / "transformer", dtype=torch.float32, device=device)
    codec = WorldCodec.from_pretrained(part("codec"), dtype=torch.float32, device=device)
    pipeline = cls(
        transformer,
        text,
        codec,
        sampler=settings,
        history=history,
        height=index["height"],
        width=index["width"],
        fps=index.get("fps", 24),
    )
    if part(DRIFT_FILE).is_file():
        try:
            pipeline.drift_settings = DriftSettings.from_dict(_read_object(part(DRIFT_FILE)))
        except (TypeError, ValueError) as exc:
            raise ModelFolderError(f"{part(DRIFT_FILE)}: {exc}") from None
    return pipeline


def load_default_pipeline(cls, device: torch.device, preset: str | None):
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        raise ModelFolderError(f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; reinstall helios")
    return load_world_folder(cls, DEFAULT_MODEL_DIR, device, preset)
