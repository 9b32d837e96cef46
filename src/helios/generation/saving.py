"""Writing a pipeline back to a folder that ``HeliosPipeline.from_pretrained`` (and, for the Wan layout,
diffusers) loads: the inverse of ``loading.py``.

* Wan layout (UMT5 + Wan VAE): ``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/scheduler_config.json``. diffusers' configs carry the sampler *family* and
  its shift (steps and guidance are call options there), so a preset's steps/guidance come back as the
  family's defaults.
* World layout (models trained here on the synthetic world): ``model_index.json``, ``transformer/``,
  ``codec/``, ``text_encoder.json``, ``sampler.json``, ``drift.json`` — everything, steps included.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..config import SamplerSettings
from .loading import DRIFT_FILE, WORLD_PIPELINE


def scheduler_configs(settings: SamplerSettings) -> tuple[dict, dict]:
    """(model_index fields, scheduler_config) from which ``sampler_from_configs`` gives the family back."""
    shift = settings.shift
    scheduler = {
        "use_dynamic_shifting": shift.kind is not None,
        "time_shift_type": shift.kind or "exponential",
        "base_image_seq_len": shift.base_seq_len,
        "max_image_seq_len": shift.max_seq_len,
        "base_shift": shift.base_shift,
        "max_shift": shift.max_shift,
    }
    if settings.sampler == "dmd":
        return (
            {"_class_name": "HeliosPyramidPipeline", "is_distilled": True, "is_cfg_zero_star": False},
            {"_class_name": "HeliosDMDScheduler", "scheduler_type": "dmd", "stages": 3, **scheduler},
        )
    if settings.pyramid_steps is not None:
        return (
            {"_class_name": "HeliosPyramidPipeline", "is_distilled": False, "is_cfg_zero_star": settings.cfg_zero_star},
            {"_class_name": "HeliosScheduler", "scheduler_type": "unipc", "stages": 3, **scheduler},
        )
    return (
        {"_class_name": "HeliosPipeline"},
        {"_class_name": "HeliosScheduler", "scheduler_type": "unipc", "stages": 1, **scheduler},
    )


def save_pipeline(pipeline, root: str | Path) -> Path:
    from ..encoders.text import UMT5TextEncoder
    from ..encoders.video import WanVideoCodec
    from ..encoders.world_codec import WorldCodec
    from ..encoders.world_text import WorldTextEncoder

    root = Path(root)
    text, codec = pipeline.text_encoder, pipeline.codec
    if isinstance(codec, WorldCodec) and isinstance(text, WorldTextEncoder):
        return _save_world(pipeline, root)
    if isinstance(codec, WanVideoCodec) and isinstance(text, UMT5TextEncoder):
        return _save_wan(pipeline, root)
    raise ValueError(
        f"save_pretrained writes the Wan layout (UMT5 + Wan VAE) or the world layout; this pipeline has "
        f"{type(text).__name__} and {type(codec).__name__}"
    )


def _save_wan(pipeline, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    index, scheduler = scheduler_configs(pipeline.sampler)
    pipeline.transformer.save_pretrained(root / "transformer")
    pipeline.codec.vae.save_pretrained(root / "vae", safe_serialization=True)
    pipeline.text_encoder.model.save_pretrained(root / "text_encoder", safe_serialization=True)
    pipeline.text_encoder.tokenizer.save_pretrained(root / "tokenizer")
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    components = {
        "transformer": ["diffusers", "HeliosTransformer3DModel"],
        "vae": ["diffusers", type(pipeline.codec.vae).__name__],
        "text_encoder": ["transformers", type(pipeline.text_encoder.model).__name__],
        "tokenizer": ["transformers", type(pipeline.text_encoder.tokenizer).__name__],
        "scheduler": ["diffusers", scheduler["_class_name"]],
    }
    (root / "model_index.json").write_text(json.dumps({**index, **components}, indent=2))
    return root


def _save_world(pipeline, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pipeline.transformer.save_pretrained(root / "transformer")
    pipeline.codec.save_pretrained(root / "codec")
    (root / "text_encoder.json").write_text(json.dumps(pipeline.text_encoder.settings()))
    (root / "sampler.json").write_text(json.dumps(asdict(pipeline.sampler), indent=1))
    (root / DRIFT_FILE).write_text(json.dumps(pipeline.drift_settings.to_dict(), indent=1))
    index = {
        "_class_name": WORLD_PIPELINE,
        "height": pipeline.height,
        "width": pipeline.width,
        "fps": pipeline.fps,
        "history": asdict(pipeline.history),
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=1))
    return root
