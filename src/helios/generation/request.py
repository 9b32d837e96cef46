"""One generation request: every option of a ``generate()`` / ``stream()`` call as one value.

The pipeline, the server (WebSocket sessions and HTTP jobs) and the command line all build a
:class:`GenerationRequest`; none of them passes the options one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..config import HistorySettings, SamplerSettings
from .drift import DriftSettings
from .prompts import PromptChange

MAX_SEED = 2**63 - 1  # the generators take a signed 64-bit seed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sigma_range(value: Any, name: str = "sigma") -> tuple[float, float]:
    """A noise level σ, or a (min, max) range, as a range within [0, 1]."""
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if (
        len(values) not in (1, 2)
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values)
        or not 0 <= values[0] <= values[-1] <= 1
    ):
        raise ValueError(f"{name} must be a number in [0, 1] or a range (min, max) within it, got {value!r}")
    return float(values[0]), float(values[-1])


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. ``prompt`` or ``prompts`` (a schedule); ``image`` (I2V) or ``video`` (V2V)
    as a path, uint8 array or [−1, 1] tensor; ``num_frames=None`` runs until stopped.
    ``preset``/``steps``/``guidance_scale``/``shift_convention`` override the pipeline's sampler.
    I2V/V2V knobs: ``image_noise_sigma`` / ``video_noise_sigma`` (σ, or a (min, max) range drawn from)
    override the noise put on the conditioning image / video history — more noise, more motion, less
    faithfulness; ``skip_first_chunk`` re-anchors on the first generated chunk instead of the input.
    ``decoder_carry``: each chunk is decoded with the causal context of the previous one (the Wan VAE
    with our decoder) instead of from zeros, as the released code does."""

    prompt: str | list[str] | None = None
    prompts: tuple[PromptChange, ...] | None = None
    negative_prompt: str = ""
    num_frames: int | None = 132
    height: int | None = None
    width: int | None = None
    image: Any = None
    video: Any = None
    seed: int = 0
    preset: str | SamplerSettings | None = None
    steps: int | tuple[int, ...] | None = None
    guidance_scale: float | None = None
    shift_convention: str | None = None
    skip_first_chunk: bool = False
    decoder_carry: bool = False
    adaptive: bool | DriftSettings = False
    image_noise_sigma: float | tuple[float, float] | None = None
    video_noise_sigma: float | tuple[float, float] | None = None
    # batches and diffusers-style options
    num_videos_per_prompt: int = 1
    generator: torch.Generator | None = None  # a CPU generator; replaces seed
    prompt_embeds: torch.Tensor | None = None  # (B, L, D) instead of prompt
    negative_prompt_embeds: torch.Tensor | None = None  # (1 or B, L, D) instead of negative_prompt
    callback_on_step_end: Callable | None = None  # callback(pipeline, step, timestep, {"latents": …}) -> dict

    def __post_init__(self) -> None:
        if self.prompts is not None:
            object.__setattr__(self, "prompts", tuple(self.prompts))
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", tuple(self.steps))
        if isinstance(self.prompt, (list, tuple)):
            if not self.prompt or not all(isinstance(p, str) for p in self.prompt):
                raise ValueError("prompt must be a string or a non-empty list of strings")
            object.__setattr__(self, "prompt", list(self.prompt))
        given = [self.prompt is not None, self.prompts is not None, self.prompt_embeds is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of prompt, prompts or prompt_embeds")
        if self.prompt is not None and any(not p.strip() for p in self.batch_prompts()):
            raise ValueError("prompt is empty")
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, torch.Tensor) or value.ndim != 3):
                raise ValueError(f"{name} must be a (batch, tokens, dim) tensor")
        if not _is_int(self.num_videos_per_prompt) or self.num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be a whole number ≥ 1, got {self.num_videos_per_prompt!r}")
        negative = self.negative_prompt_embeds
        if negative is not None and negative.shape[0] not in (1, self.batch_size):
            raise ValueError(f"negative_prompt_embeds has {negative.shape[0]} rows for a batch of {self.batch_size}")
        if self.generator is not None and (
            not isinstance(self.generator, torch.Generator) or self.generator.device.type != "cpu"
        ):
            raise ValueError("generator must be a CPU torch.Generator (noise is drawn on the CPU, then moved)")
        if self.callback_on_step_end is not None and not callable(self.callback_on_step_end):
            raise ValueError("callback_on_step_end must be callable")
        if self.image is not None and self.video is not None:
            raise ValueError("give either an image (I2V) or a video (V2V), not both")
        if self.num_frames is not None and (not _is_int(self.num_frames) or self.num_frames < 1):
            raise ValueError(f"num_frames must be an integer of at least 1, got {self.num_frames!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.guidance_scale is not None and (
            isinstance(self.guidance_scale, bool)
            or not isinstance(self.guidance_scale, (int, float))
            or not math.isfinite(self.guidance_scale)
            or self.guidance_scale < 0
        ):
            raise ValueError(f"guidance_scale must be a finite number ≥ 0, got {self.guidance_scale!r}")
        for name in ("image_noise_sigma", "video_noise_sigma"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, sigma_range(value, name))
                if self.image is None and self.video is None:
                    raise ValueError(f"{name} applies to I2V / V2V: give an image or a video")
        steps = self.steps if isinstance(self.steps, tuple) else (self.steps,) if self.steps is not None else ()
        if any(not _is_int(s) or s < 1 for s in steps):
            raise ValueError(f"steps must be whole numbers ≥ 1, got {self.steps!r}")

    def batch_prompts(self) -> list[str]:
        """The prompts of a ``prompt`` request, one per video group (a string is a group of one)."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt or [])

    @property
    def groups(self) -> int:
        """Distinct conditionings (prompts or embedding rows); each gives ``num_videos_per_prompt`` videos."""
        if self.prompt_embeds is not None:
            return self.prompt_embeds.shape[0]
        return len(self.batch_prompts()) if self.prompt is not None else 1

    @property
    def batch_size(self) -> int:
        return self.groups * self.num_videos_per_prompt

    def prompt_changes(self) -> list[PromptChange]:
        """The schedule of a single-conditioning request (``prompts``, or one ``prompt``)."""
        if self.prompts is not None:
            return list(self.prompts)
        return [PromptChange(0, p) for p in self.batch_prompts()[:1]]

    def history_settings(self, pipeline: HistorySettings) -> HistorySettings:
        """The pipeline's history settings with this request's conditioning-noise overrides."""
        changes = {
            name: getattr(self, name)
            for name in ("image_noise_sigma", "video_noise_sigma")
            if getattr(self, name) is not None
        }
        return replace(pipeline, **changes) if changes else pipeline

    def drift(self, calibrated: DriftSettings) -> DriftSettings | None:
        """The adaptive-sampling settings: given ones, else (``adaptive=True``) the model's calibrated ones."""
        return calibrated if self.adaptive is True else (self.adaptive or None)
