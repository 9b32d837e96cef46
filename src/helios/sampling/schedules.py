"""Sigma and timestep tables: pyramid stage constants, per-stage schedules, dynamic shift.

Flow matching with x_t = (1 − σ)·x0 + σ·ε and a velocity target ε − x0. The pyramid splits the
trajectory into stages of growing resolution (paper §3.3.2); each stage owns a range of the
1000 training timesteps and a *local* σ running 0.999 → 0. All tables are float64 on the CPU,
as in the released schedulers, so the numbers match them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..config import ShiftSettings

ShiftType = Literal["linear", "exponential"]


def calculate_shift(
    seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5, max_shift: float = 1.15
) -> float:
    """Dynamic-shift ``mu`` for a token count: linear from (256, 0.5) to (4096, 1.15)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * slope + (base_shift - slope * base_seq_len)


def time_shift(kind: ShiftType, mu: float, sigmas: torch.Tensor) -> torch.Tensor:
    """Shift σ toward noise: linear ``mu/(mu + 1/σ − 1)`` or exponential ``e^mu/(e^mu + 1/σ − 1)``."""
    if kind == "linear":
        return mu / (mu + (1 / sigmas - 1))
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    raise ValueError(f"unknown time shift {kind!r}; choose 'linear' or 'exponential'")


def shift_mu(settings: ShiftSettings, seq_len: int) -> float:
    return calculate_shift(
        seq_len, settings.base_seq_len, settings.max_seq_len, settings.base_shift, settings.max_shift
    )


@dataclass(frozen=True)
class StageSchedule:
    """Timesteps (n, float64) and sigmas (n + 1, float64, last one 0) for one stage's n steps."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor

    def __len__(self) -> int:
        return len(self.timesteps)


@dataclass
class PyramidConstants:
    """Stage boundaries of the pyramid (paper §3.3.2; Appendix A of the official report).

    ``ori_start_sigmas`` are the global σ where each stage starts; stages after the first start
    from an upsampled, block-re-noised latent, whose effective σ is ``start_sigmas``.
    """

    stages: int = 3
    stage_range: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)
    gamma: float = 1 / 3
    num_train_timesteps: int = 1000
    shift: float = 1.0
    ori_start_sigmas: list[float] = field(init=False)
    start_sigmas: list[float] = field(init=False)
    end_sigmas: list[float] = field(init=False)
    timestep_ratios: list[tuple[float, float]] = field(init=False)
    stage_timesteps: list[torch.Tensor] = field(init=False)  # 1000 float64 timesteps spanning each stage

    def __post_init__(self) -> None:
        n = self.num_train_timesteps
        sigmas, timesteps = global_sigmas(n, self.shift)
        self.ori_start_sigmas, self.start_sigmas, self.end_sigmas = [], [], []
        distances = []
        for i in range(self.stages):
            start_index = max(int(self.stage_range[i] * n), 0)
            end_index = min(int(self.stage_range[i + 1] * n), n)
            start = sigmas[start_index].item()
            end = sigmas[end_index].item() if end_index < n else 0.0
            self.ori_start_sigmas.append(start)
            if i > 0:
                start = 1 - renoise_coefficients(start, self.gamma)[0] * (1 - start)
            distances.append(start - end)
            self.start_sigmas.append(start)
            self.end_sigmas.append(end)
        total = sum(distances)
        self.timestep_ratios = []
        for i in range(self.stages):
            begin = 0.0 if i == 0 else sum(distances[:i]) / total
            # The released scheduler ends the last stage just below 1 so its index stays in range.
            finish = 0.9999999999999999 if i == self.stages - 1 else sum(distances[: i + 1]) / total
            self.timestep_ratios.append((begin, finish))
        self.stage_timesteps = []
        for begin, finish in self.timestep_ratios:
            t_max = min(timesteps[int(begin * n)].item(), 999)
            t_min = timesteps[min(int(finish * n), n - 1)].item()
            self.stage_timesteps.append(torch.from_numpy(np.linspace(t_max, t_min, n + 1)[:-1]))

    def stage_bounds(self, stage: int) -> tuple[float, float]:
        """(first, last) timestep of a stage's range."""
        table = self.stage_timesteps[stage]
        return table[0].item(), table[-1].item()


def global_sigmas(num_train_timesteps: int = 1000, shift: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The training σ table (0.999 … 0 over 1000 entries, float64) and its timesteps (σ·1000)."""
    alphas = np.linspace(1, 1 / num_train_timesteps, num_train_timesteps + 1)
    sigmas = 1.0 - alphas
    sigmas = np.flip(shift * sigmas / (1 + (shift - 1) * sigmas))[:-1].copy()
    sigmas_t = torch.from_numpy(sigmas)
    return sigmas_t, sigmas_t * num_train_timesteps


def flow_matching_training_sigmas(num_train_timesteps: int = 1000) -> torch.Tensor:
    """σ table of stage-1 flow-matching training (unshifted, 1 → 1/1000 over 1000 entries, float64)."""
    return torch.linspace(1.0, 1.0 / num_train_timesteps, num_train_timesteps, dtype=torch.float64)


def local_stage_sigmas(num_train_timesteps: int = 1000) -> np.ndarray:
    """The local σ table every pyramid stage runs along (0.999 → 0, ``num_train_timesteps`` entries)."""
    return np.linspace(0.999, 0, num_train_timesteps + 1)[:-1]


def renoise_coefficients(ori_start_sigma: float, gamma: float) -> tuple[float, float]:
    """(alpha, beta) of the stage transition ``x ← alpha·up(x) + beta·block_noise`` (paper eq. 10).

    With signal level s = 1 − ori_start_sigma: alpha = 1/(sqrt(1 + 1/γ)(1 − s) + s),
    beta = alpha·(1 − s)/sqrt(γ).
    """
    signal = 1 - ori_start_sigma
    alpha = 1 / (math.sqrt(1 + 1 / gamma) * (1 - signal) + signal)
    beta = alpha * (1 - signal) / math.sqrt(gamma)
    return alpha, beta


def pyramid_stage_schedule(
    constants: PyramidConstants,
    stage: int,
    steps: int,
    shift: ShiftSettings,
    mu: float | None = None,
    distilled: bool = False,
) -> StageSchedule:
    """The schedule of one pyramid stage with ``steps`` model calls.

    Distilled (DMD) schedules take ``steps + 1`` points and drop the last timestep and the
    second-to-last σ, so σ ends 0.999 … 0.5, 0 for two steps (the released convention).
    """
    points = steps + 1 if distilled else steps
    t_first, t_last = constants.stage_bounds(stage)
    timesteps = torch.from_numpy(np.linspace(t_first, t_last, points))
    # Every stage has the same local σ range, the first and last of a 1000-entry 0.999 → 0 table.
    local = local_stage_sigmas(constants.num_train_timesteps)
    sigmas = torch.cat([torch.from_numpy(np.linspace(local[0], local[-1], points)), torch.zeros(1)])
    if distilled:
        timesteps = timesteps[:-1]
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    if shift.kind is not None:
        if mu is None:
            raise ValueError("dynamic shift needs mu")
        sigmas = time_shift(shift.kind, mu, sigmas)
        table = constants.stage_timesteps[stage]
        timesteps = table.min() + sigmas[:-1] * (table.max() - table.min())
    return StageSchedule(timesteps, sigmas)


def single_stage_schedule(steps: int, shift: ShiftSettings, mu: float | None = None) -> StageSchedule:
    """The one-resolution schedule of Helios-Base: σ = linspace(0.999, 0, steps + 1)[:-1], then 0."""
    sigmas = torch.from_numpy(np.linspace(0.999, 0.0, steps + 1)[:-1].copy())
    timesteps = sigmas * 1000
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    if shift.kind is not None:
        if mu is None:
            raise ValueError("dynamic shift needs mu")
        sigmas = time_shift(shift.kind, mu, sigmas)
        timesteps = sigmas[:-1] * 1000
    return StageSchedule(timesteps, sigmas)
