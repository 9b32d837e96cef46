"""Client messages → a validated :class:`GenerationRequest`: one schema for WebSocket sessions and
HTTP jobs. Every problem is a :class:`ProtocolError` whose message names the field."""

from __future__ import annotations

import base64
import tempfile

import numpy as np

from ..generation import GenerationRequest, HeliosPipeline, PromptChange


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def decode_media(data: str, still: bool) -> np.ndarray:
    """base64 file bytes (PNG/JPEG image, or MP4 video) → uint8 frames."""
    from ..media import read_image, read_video

    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        raise ProtocolError("bad_input", "image/video must be base64-encoded file bytes") from None
    suffix = ".png" if still else ".mp4"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(raw)
        handle.flush()
        try:
            return read_image(handle.name) if still else read_video(handle.name)[0]
        except ValueError as exc:
            raise ProtocolError("bad_input", str(exc).replace(handle.name, "the uploaded file")) from None


def _schedule(prompts, chunk_frames: int) -> tuple[PromptChange, ...]:
    try:
        return tuple(
            PromptChange(
                int(p.get("chunk", int(p.get("frame", 0)) // chunk_frames)),
                str(p["prompt"]),
                int(p.get("transition", 1)),
            )
            for p in prompts
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProtocolError("bad_input", "prompts must be a list of {prompt, chunk|frame, transition?}") from None


def request_from_message(
    message: dict, pipeline: HeliosPipeline, max_frames: int, default_frames: int | None = None
) -> GenerationRequest:
    """The request of a ``start`` message or an HTTP job body."""
    chunk_frames = pipeline.chunk_frames
    frames = message.get("frames", default_frames if default_frames is not None else 4 * chunk_frames)
    if frames is not None and (not isinstance(frames, int) or not 1 <= frames <= max_frames):
        raise ProtocolError("bad_input", f"frames must be an integer from 1 to {max_frames}, or null for until stopped")
    prompt = message.get("prompt")
    prompts = message.get("prompts")
    if (prompt is None) == (prompts is None):
        raise ProtocolError("bad_input", "give exactly one of prompt or prompts")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ProtocolError("bad_input", "prompt must be a non-empty string")
    steps = message.get("steps")
    try:
        return GenerationRequest(
            prompt=prompt,
            prompts=_schedule(prompts, chunk_frames) if prompts is not None else None,
            num_frames=frames,
            seed=int(message.get("seed", 0)),
            preset=message.get("preset"),
            steps=tuple(steps) if isinstance(steps, list) else steps,
            guidance_scale=message.get("guidance_scale"),
            image=decode_media(message["image"], still=True) if message.get("image") else None,
            video=decode_media(message["video"], still=False) if message.get("video") else None,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError("bad_input", str(exc)) from None
