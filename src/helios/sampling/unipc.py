"""UniPC multistep solver (bh2, order 2, x0-prediction, flow sigmas), as released for Helios.

One solver instance integrates one stage; :meth:`UniPC.reset` starts a new stage (the released
pipelines reset the history at every pyramid stage and every chunk). Scalar coefficients are
computed in float64 exactly like the reference scheduler, then applied to the latents.
"""

from __future__ import annotations

import torch

from .schedules import StageSchedule

SOLVER_ORDER = 2
SIGMA_FLOOR = 1e-8  # σ is clamped here so log σ stays finite at the final σ = 0


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    """log-SNR of flow sigma σ: log(1 − σ) − log(max(σ, 1e-8))."""
    return torch.log(1 - sigma) - torch.log(torch.clamp(sigma, min=SIGMA_FLOOR))


def _phi_coefficients(h: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """h·φ1 = expm1(−h), B(h) = expm1(−h) (bh2) and the right-hand side b of the UniPC system."""
    hh = -h
    h_phi_1 = torch.expm1(hh)
    b_h = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    rhs = []
    for i in range(1, order + 1):
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return h_phi_1, b_h, rhs


class UniPC:
    """Predictor–corrector sampler for one stage's :class:`StageSchedule`."""

    def __init__(self, schedule: StageSchedule):
        self.sigmas = schedule.sigmas
        self.steps = len(schedule)
        self.reset()

    def reset(self) -> None:
        self.x0_history: list[torch.Tensor] = []
        self.last_sample: torch.Tensor | None = None
        self.warm_steps = 0  # the released "lower_order_nums"
        self.order = 0
        self.index = 0

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Advance ``sample`` (at σ_index) by one step given the model's velocity prediction."""
        i = self.index
        x0 = sample - self.sigmas[i] * velocity
        if i > 0 and self.last_sample is not None:
            sample = self._correct(x0, sample)
        self.x0_history = (self.x0_history + [x0])[-SOLVER_ORDER:]
        self.order = min(SOLVER_ORDER, self.steps - i, self.warm_steps + 1)  # lower order at the end and start
        self.last_sample = sample
        next_sample = self._predict(sample)
        self.warm_steps = min(self.warm_steps + 1, SOLVER_ORDER)
        self.index += 1
        return next_sample

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        i = self.index
        sigma_t, sigma_s0 = self.sigmas[i + 1], self.sigmas[i]
        m0 = self.x0_history[-1]
        lambda_s0 = _lambda(sigma_s0)
        h = _lambda(sigma_t) - lambda_s0
        alpha_t = 1 - sigma_t
        h_phi_1, b_h, _ = _phi_coefficients(h, self.order)
        out = (
            torch.clamp(sigma_t, min=SIGMA_FLOOR) / torch.clamp(sigma_s0, min=SIGMA_FLOOR) * x - alpha_t * h_phi_1 * m0
        )
        if self.order == 2:
            rk = (_lambda(self.sigmas[i - 1]) - lambda_s0) / h
            d1 = (self.x0_history[-2] - m0) / rk
            out = out - alpha_t * b_h * (torch.tensor(0.5, dtype=x.dtype) * d1)  # 0-dim: a scalar on any device
        return out.to(x.dtype)

    def _correct(self, x0_now: torch.Tensor, x_now: torch.Tensor) -> torch.Tensor:
        i = self.index
        sigma_t, sigma_s0 = self.sigmas[i], self.sigmas[i - 1]
        m0 = self.x0_history[-1]
        x_before = self.last_sample
        lambda_s0 = _lambda(sigma_s0)
        h = _lambda(sigma_t) - lambda_s0
        alpha_t = 1 - sigma_t
        h_phi_1, b_h, rhs = _phi_coefficients(h, self.order)
        out = (
            torch.clamp(sigma_t, min=SIGMA_FLOOR) / torch.clamp(sigma_s0, min=SIGMA_FLOOR) * x_before
            - alpha_t * h_phi_1 * m0
        )
        d1_t = x0_now - m0
        if self.order == 1:
            rho_last = torch.tensor([0.5], dtype=x_before.dtype)[-1]
            return (out - alpha_t * b_h * (0 + rho_last * d1_t)).to(x_before.dtype)
        rk = (_lambda(self.sigmas[i - 2]) - lambda_s0) / h
        rks = torch.tensor([rk.item(), 1.0], dtype=torch.float64)
        system = torch.stack([torch.ones_like(rks), rks])
        rhos = torch.linalg.solve(system, torch.tensor([r.item() for r in rhs], dtype=torch.float64)).to(x_before.dtype)
        d1 = (self.x0_history[-2] - m0) / rk
        correction = rhos[0] * d1
        return (out - alpha_t * b_h * (correction + rhos[-1] * d1_t)).to(x_before.dtype)
