"""Staged Backward Simulation (paper §3.4.2): the few-step generator's own pyramid sampler, run in
training so the sample it is judged on is the sample it would make at inference.

For each pyramid stage an exit step is drawn; the steps before it run without gradient, the exit step
runs with gradient and its x0 estimate is the stage's output. That output is upsampled and block
re-noised into the next stage with gradient kept, so one backward reaches every stage's exit step
(chained across stages) and nothing else: memory of one model call per stage, not of the whole
trajectory (the stages' schedules: ``sampling.chunk.pyramid_schedules``, the sampler's own). The
re-noise of the steps before an exit mixes a detached x0 with the stage's start, so
the chain to earlier stages runs through the start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..sampling.dmd import dmd_renoise, dmd_x0
from ..sampling.pyramid import downsample_noise, upsample_and_renoise
from ..sampling.schedules import PyramidConstants, StageSchedule

# (latents, integer timesteps (B,)) → velocity; history and text are bound by the caller
StageDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Rollout:
    sample: torch.Tensor  # the final full-resolution x0 (with gradient through the exit steps)
    exits: tuple[int, ...]  # the exit step of each stage
    grad_calls: int  # model calls made with gradient (one per stage when gradients are on)


def draw_exits(schedules: list[StageSchedule], generator: torch.Generator) -> tuple[int, ...]:
    """A uniformly drawn exit step for every stage."""
    return tuple(int(torch.randint(len(s), (1,), generator=generator)) for s in schedules)


def staged_backward_simulation(
    denoise: StageDenoiser,
    noise: torch.Tensor,
    schedules: list[StageSchedule],
    constants: PyramidConstants,
    exits: tuple[int, ...],
    generator: torch.Generator,
    model_dtype: torch.dtype = torch.float32,
) -> Rollout:
    """Run the generator's pyramid from full-size ``noise`` to x0, leaving each stage at its exit step."""
    latents = downsample_noise(noise, constants.stages)
    grad_calls = 0
    x0 = latents
    for stage, (schedule, exit_step) in enumerate(zip(schedules, exits)):
        if not 0 <= exit_step < len(schedule):
            raise ValueError(f"stage {stage}: exit step {exit_step} outside its {len(schedule)} steps")
        if stage > 0:
            latents = upsample_and_renoise(x0, stage, constants, generator, model_dtype)
        start = latents
        for index in range(exit_step + 1):
            timestep = schedule.timesteps[index].expand(latents.shape[0]).to(torch.int64).to(latents.device)
            exiting = index == exit_step
            with torch.set_grad_enabled(exiting and torch.is_grad_enabled()):
                velocity = denoise(latents.to(model_dtype), timestep)
            grad_calls += int(velocity.requires_grad)
            x0 = dmd_x0(schedule, index, velocity, latents)
            if not exiting:
                latents = dmd_renoise(schedule, index, x0.detach(), start)
    return Rollout(x0, tuple(exits), grad_calls)
