"""Client messages → a validated :class:`GenerationRequest`: one schema for WebSocket sessions and HTTP
jobs. Every field is checked for its type and range before anything runs; every problem is a
:class:`ProtocolError` whose message names the field. Unknown fields are refused, not ignored."""

from __future__ import annotations

import base64
import binascii
import math
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SAMPLER_PRESETS
from ..generation import GenerationRequest, HeliosPipeline, PromptChange
from ..media import MediaError, read_image, read_video

MAX_SEED = 2**63 - 1


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_input", message)


@dataclass(frozen=True)
class Limits:
    """Bounds on every numeric option, so no request can ask for unbounded work or memory."""

    max_frames: int = 24 * 60 * 10  # per request
    max_steps: int = 100  # per pyramid stage (the released presets use ≤ 50)
    max_guidance: float = 30.0
    max_prompt_chars: int = 2000
    max_schedule_entries: int = 256
    max_transition: int = 64  # chunks
    max_image_pixels: int = 4096 * 4096
    max_video_frame_pixels: int = 1920 * 1080
    max_video_frames: int = 24 * 60  # frames decoded from an uploaded clip


def integer(message: dict, key: str, low: int, high: int, default: Any = None, nullable: bool = False) -> Any:
    value = message.get(key, default)
    if value is None and (nullable or default is None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be an integer from {low} to {high}" + (", or null" if nullable else ""))
    return value


def number(message: dict, key: str, low: float, high: float) -> float | None:
    value = message.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise _bad(f"{key} must be a finite number from {low:g} to {high:g}")
    return float(value)


def flag(message: dict, key: str) -> bool:
    value = message.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be true or false")
    return value


def text(message: dict, key: str, limits: Limits, required: bool = True) -> str | None:
    value = message.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{key} must be a non-empty string")
    if len(value) > limits.max_prompt_chars:
        raise _bad(f"{key} has {len(value)} characters; at most {limits.max_prompt_chars} are accepted")
    return value


def _steps(value: Any, limits: Limits) -> int | tuple[int, ...] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not 1 <= len(values) <= 3 or any(
        isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limits.max_steps for v in values
    ):
        raise _bad(f"steps must be an integer from 1 to {limits.max_steps}, or a list of up to 3 of them")
    return tuple(values) if isinstance(value, list) else value


def _schedule(prompts: Any, chunk_frames: int, limits: Limits) -> tuple[PromptChange, ...]:
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= limits.max_schedule_entries:
        raise _bad(f"prompts must be a list of 1 to {limits.max_schedule_entries} entries")
    changes = []
    for n, entry in enumerate(prompts, start=1):
        if not isinstance(entry, dict) or set(entry) - {"prompt", "chunk", "frame", "transition"}:
            raise _bad(f"prompts entry {n} must be an object with prompt, chunk or frame, and transition")
        prompt = text(entry, "prompt", limits)
        if "chunk" in entry:
            chunk = integer(entry, "chunk", 0, limits.max_frames)
        else:
            chunk = integer(entry, "frame", 0, limits.max_frames, default=0) // chunk_frames
        changes.append(PromptChange(chunk, prompt, integer(entry, "transition", 1, limits.max_transition, default=1)))
    return tuple(changes)


def decode_media(data: Any, still: bool, limits: Limits, size: tuple[int, int], keep_last: int) -> np.ndarray:
    """base64 file bytes (PNG/JPEG image, or MP4 video) → uint8 frames, bounded before decoding."""
    if not isinstance(data, str):
        raise _bad("image/video must be a base64 string of the file's bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise _bad("image/video must be base64-encoded file bytes") from None
    with tempfile.NamedTemporaryFile(suffix=".png" if still else ".mp4") as handle:
        handle.write(raw)
        handle.flush()
        try:
            if still:
                return read_image(handle.name, limits.max_image_pixels, size=size)
            return read_video(handle.name, limits.max_video_frame_pixels, limits.max_video_frames, size, keep_last)[0]
        except MediaError as exc:
            raise _bad(str(exc).replace(handle.name, "the uploaded file").replace("image ", "", 1)) from None


START_FIELDS = {
    "type",
    "prompt",
    "prompts",
    "frames",
    "seed",
    "preset",
    "steps",
    "guidance_scale",
    "image",
    "video",
    "image_noise",
    "video_noise",
    "skip_first_chunk",
    "decoder_carry",
}


def request_from_message(
    message: dict, pipeline: HeliosPipeline, limits: Limits, until_stopped: bool = True
) -> GenerationRequest:
    """The request of a ``start`` message or an HTTP job body (``until_stopped=False``: frames required finite)."""
    unknown = sorted(set(message) - START_FIELDS)
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)}")
    if ("prompt" in message) == ("prompts" in message):
        raise _bad("give exactly one of prompt or prompts")
    chunk_frames = pipeline.chunk_frames
    frames = integer(message, "frames", 1, limits.max_frames, default=4 * chunk_frames, nullable=until_stopped)
    preset = message.get("preset")
    if preset is not None and (not isinstance(preset, str) or preset not in SAMPLER_PRESETS):
        raise _bad(f"preset must be one of {', '.join(sorted(SAMPLER_PRESETS))}")
    if message.get("image") is not None and message.get("video") is not None:
        raise _bad("give either an image (I2V) or a video (V2V), not both")
    size = (pipeline.height, pipeline.width)
    media = {
        key: decode_media(message[key], key == "image", limits, size, pipeline.v2v_frames)
        for key in ("image", "video")
        if message.get(key) is not None
    }
    try:
        return GenerationRequest(
            prompt=text(message, "prompt", limits, required=False),
            prompts=_schedule(message["prompts"], chunk_frames, limits) if "prompts" in message else None,
            num_frames=frames,
            seed=integer(message, "seed", 0, MAX_SEED, default=0),
            preset=preset,
            steps=_steps(message.get("steps"), limits),
            guidance_scale=number(message, "guidance_scale", 0.0, limits.max_guidance),
            image_noise_sigma=message.get("image_noise"),
            video_noise_sigma=message.get("video_noise"),
            skip_first_chunk=flag(message, "skip_first_chunk"),
            decoder_carry=flag(message, "decoder_carry"),
            **media,
        )
    except ValueError as exc:
        raise _bad(str(exc)) from None


def prompt_change(message: dict, limits: Limits) -> tuple[str, int]:
    """The (prompt, transition) of a live ``prompt`` message."""
    unknown = sorted(set(message) - {"type", "prompt", "transition"})
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)}")
    prompt = text(message, "prompt", limits)
    return prompt, integer(message, "transition", 1, limits.max_transition, default=1)
