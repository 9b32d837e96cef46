"""The few-step sampler of Helios-Distilled (DMD, paper §3.4.2).

Each step converts the velocity to x0 = x_t − σ_t·v (in float64, σ looked up at the truncated
integer timestep) and, unless it is the stage's last step, moves back along the straight line
from the stage's *start* latent: x_next = (1 − σ_next)·x0 + σ_next·start. No fresh noise.
"""

from __future__ import annotations

import torch

from ..devices import to_device
from .schedules import StageSchedule


def step_sigma(schedule: StageSchedule, index: int) -> torch.Tensor:
    """σ of the schedule entry nearest to the integer-truncated timestep ``index`` (released lookup)."""
    target = schedule.timesteps[index].to(torch.int64).double()
    nearest = torch.argmin((schedule.timesteps - target).abs())
    return schedule.sigmas[nearest]


def dmd_x0(schedule: StageSchedule, index: int, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """The step's clean estimate x0 = x_t − σ_t·v (float64 arithmetic, the prediction's dtype)."""
    sigma = to_device(step_sigma(schedule, index), velocity.device)
    return (sample.double() - sigma * velocity.double()).to(velocity.dtype)


def dmd_renoise(schedule: StageSchedule, index: int, x0: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """The latent of step ``index + 1``: back along the line from the stage's start, (1 − σ)·x0 + σ·start."""
    sigma_next = to_device(step_sigma(schedule, index + 1), x0.device)
    return ((1 - sigma_next) * x0.double() + sigma_next * start.double()).to(start.dtype)


def dmd_step(
    schedule: StageSchedule, index: int, velocity: torch.Tensor, sample: torch.Tensor, start: torch.Tensor
) -> torch.Tensor:
    """One DMD step. x0 keeps the prediction's dtype; the re-noised latent takes ``start``'s dtype."""
    x0 = dmd_x0(schedule, index, velocity, sample)
    if index == len(schedule) - 1:
        return x0
    return dmd_renoise(schedule, index, x0, start)
