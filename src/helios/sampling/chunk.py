"""Denoising one chunk: single resolution (Helios-Base) or the 3-stage pyramid (Mid, Distilled).

The released pipelines' order of random draws is kept (chunk noise, then one block-noise draw per
stage transition), so a seed gives the same video as diffusers' pipelines.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import SamplerSettings
from ..devices import to_device
from .dmd import dmd_step
from .guidance import cfg, cfg_zero_star, zeroed_by_cfg_zero_init
from .noise import NoiseDraws
from .pyramid import downsample_noise, upsample_and_renoise
from .schedules import PyramidConstants, StageSchedule, pyramid_stage_schedule, shift_mu, single_stage_schedule
from .unipc import UniPC

# (latents in model dtype, timestep (B,), text embedding) → velocity
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
StepHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (latents, timestep) -> latents


def _token_count(latents: torch.Tensor, patch_size: tuple[int, int, int]) -> int:
    return math.prod(latents.shape[-3:]) // math.prod(patch_size)


def pyramid_schedules(
    settings: SamplerSettings,
    constants: PyramidConstants,
    latent_shape: tuple[int, ...],
    patch_size: tuple[int, int, int],
    first_chunk: bool,
) -> list[StageSchedule]:
    """The schedule of every pyramid stage for a chunk of full-size ``latent_shape`` (…, T, H, W), as
    the sampler runs them: dynamic-shift mu from the stage's token count (before its upsample, or after,
    per ``shift_convention``), steps doubled on an amplified DMD first chunk. Used by the sampler and
    by stage-3 training's backward simulation, so both walk the same timesteps."""
    frames, height, width = latent_shape[-3:]
    size = (height >> (constants.stages - 1), width >> (constants.stages - 1))  # repeated floor halving
    distilled = settings.sampler == "dmd"
    schedules = []
    for stage, steps in enumerate(settings.pyramid_steps):
        before = size
        if stage > 0:
            size = (2 * size[0], 2 * size[1])
        used = before if settings.shift_convention == "diffusers" else size
        tokens = frames * used[0] * used[1] // math.prod(patch_size)
        mu = shift_mu(settings.shift, tokens) if settings.shift.kind else None
        if distilled and settings.amplify_first_chunk and first_chunk:
            steps = 2 * steps
        schedules.append(pyramid_stage_schedule(constants, stage, steps, settings.shift, mu, distilled=distilled))
    return schedules


class ChunkSampler:
    """Turns Gaussian noise into the clean latents of one chunk.

    ``batched_cfg`` (an execution choice, not a sampler setting): the conditional and unconditional
    forwards run as one batch of two — faster on a GPU, equal up to float rounding.
    """

    def __init__(
        self,
        settings: SamplerSettings,
        patch_size: tuple[int, int, int],
        model_dtype: torch.dtype,
        batched_cfg: bool = False,
    ):
        self.settings = settings
        self.patch_size = patch_size
        self.model_dtype = model_dtype
        self.batched_cfg = batched_cfg
        self.constants = PyramidConstants(stages=len(settings.pyramid_steps)) if settings.pyramid_steps else None

    def _velocity(self, model: Denoiser, latents, timestep, text, negative, stage: int, step: int) -> torch.Tensor:
        s = self.settings
        if not s.uses_cfg:
            return model(latents, timestep, text)
        if (
            s.cfg_zero_star
            and s.zero_init_steps is not None
            and zeroed_by_cfg_zero_init(stage, step, s.zero_init_steps)
        ):
            return torch.zeros(latents.shape, dtype=self.model_dtype, device=latents.device)
        if self.batched_cfg:
            cond, uncond = model(
                torch.cat([latents, latents]), torch.cat([timestep, timestep]), torch.cat([text, negative])
            ).chunk(2)
        else:
            cond = model(latents, timestep, text)
            uncond = model(latents, timestep, negative)
        return cfg_zero_star(cond, uncond, s.guidance_scale) if s.cfg_zero_star else cfg(cond, uncond, s.guidance_scale)

    def sample(
        self,
        model: Denoiser,
        noise: torch.Tensor,
        text: torch.Tensor,
        negative: torch.Tensor | None,
        draw: NoiseDraws,
        first_chunk: bool,
        trajectory: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        on_step: StepHook | None = None,
    ) -> torch.Tensor:
        """``trajectory`` (pyramid only): a list that receives (start, end) latents of every stage —
        what Staged ODE Init regresses on (``training/ode_pairs.py``). ``on_step(latents, timestep)``
        runs after every sampling step and returns the latents to go on with (a user's callback)."""
        if self.settings.pyramid_steps is None:
            if trajectory is not None:
                raise ValueError("trajectory recording needs a pyramid sampler")
            return self._single_stage(model, noise, text, negative, on_step)
        return self._pyramid(model, noise, text, negative, draw, first_chunk, trajectory, on_step)

    def _single_stage(self, model, latents, text, negative, on_step=None) -> torch.Tensor:
        s = self.settings
        mu = shift_mu(s.shift, _token_count(latents, self.patch_size)) if s.shift.kind else None
        schedule = single_stage_schedule(s.steps, s.shift, mu)
        solver = UniPC(schedule)
        for i, t in enumerate(schedule.timesteps):
            # Helios-Base receives the float timestep (the pyramid pipelines truncate to int64).
            timestep = to_device(t.expand(latents.shape[0]), latents.device)
            velocity = self._velocity(model, latents.to(self.model_dtype), timestep, text, negative, 0, i)
            latents = solver.step(velocity, latents)
            if on_step is not None:
                latents = on_step(latents, t)
        return latents

    def _pyramid(
        self, model, noise, text, negative, draw: NoiseDraws, first_chunk: bool, trajectory=None, on_step=None
    ):
        s = self.settings
        constants = self.constants
        latents = downsample_noise(noise, constants.stages)
        distilled = s.sampler == "dmd"
        schedules = pyramid_schedules(s, constants, noise.shape, self.patch_size, first_chunk)
        for stage, schedule in enumerate(schedules):
            if stage > 0:
                latents = upsample_and_renoise(latents, stage, constants, draw.generator, self.model_dtype)
            start = latents
            solver = None if distilled else UniPC(schedule)  # UniPC history restarts at every stage
            for i, t in enumerate(schedule.timesteps):
                timestep = to_device(t.expand(latents.shape[0]).to(torch.int64), latents.device)
                velocity = self._velocity(model, latents.to(self.model_dtype), timestep, text, negative, stage, i)
                if distilled:
                    latents = dmd_step(schedule, i, velocity, latents, start)
                else:
                    latents = solver.step(velocity, latents)
                if on_step is not None:
                    latents = on_step(latents, t)
            if trajectory is not None:
                trajectory.append((start, latents))
        return latents
