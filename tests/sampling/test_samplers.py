"""Schedules, UniPC, DMD, pyramid transitions and guidance against the spec fixtures and diffusers."""

from __future__ import annotations

import math

import pytest
import torch

from helios.sampling.dmd import dmd_step
from helios.sampling.guidance import cfg, cfg_zero_star
from helios.sampling.pyramid import block_noise, block_noise_factor, downsample_noise
from helios.sampling.schedules import (
    PyramidConstants,
    ShiftSettings,
    calculate_shift,
    pyramid_stage_schedule,
    renoise_coefficients,
    single_stage_schedule,
)
from helios.sampling.unipc import UniPC

CONSTANTS = PyramidConstants()


def test_pyramid_constants_match_appendix_a():
    assert CONSTANTS.ori_start_sigmas == pytest.approx([0.999, 0.666333, 0.333666], abs=1e-6)
    assert CONSTANTS.start_sigmas == pytest.approx([0.999, 0.799760, 0.500374], abs=1e-6)
    expected_ratios = [(0, 0.256068), (0.256068, 0.614840), (0.614840, 1)]
    for got, want in zip(CONSTANTS.timestep_ratios, expected_ratios):
        assert got == pytest.approx(want, abs=1e-6)
    bounds = [CONSTANTS.stage_bounds(i) for i in range(3)]
    assert bounds == [pytest.approx(b, abs=1e-3) for b in [(999, 743.512), (743.256, 385.972), (385.614, 1.384)]]


def test_renoise_coefficients_match_appendix_a():
    assert renoise_coefficients(CONSTANTS.ori_start_sigmas[1], 1 / 3) == pytest.approx((0.6001, 0.6926), abs=1e-4)
    assert renoise_coefficients(CONSTANTS.ori_start_sigmas[2], 1 / 3) == pytest.approx((0.7498, 0.4333), abs=1e-4)


def test_dynamic_shift_mu_at_384x640():
    assert [round(calculate_shift(n), 3) for n in (540, 2160, 8640)] == [0.548, 0.822, 1.919]


@pytest.mark.parametrize("amplified", [False, True])
def test_dmd_schedules_without_shift(amplified):
    steps = 4 if amplified else 2
    expected = {
        False: [(999, 871.26), (743.26, 564.61), (385.61, 193.50)],
        True: [(999, 935.13, 871.26, 807.38), (743.26, 653.93, 564.61, 475.29), (385.61, 289.56, 193.50, 97.44)],
    }[amplified]
    for stage in range(3):
        schedule = pyramid_stage_schedule(CONSTANTS, stage, steps, ShiftSettings(), distilled=True)
        assert schedule.timesteps.tolist() == pytest.approx(expected[stage], abs=0.01)
    sigmas = [0.999, 0.7495, 0.5, 0.2505, 0] if amplified else [0.999, 0.5, 0]
    assert schedule.sigmas.tolist() == pytest.approx(sigmas, abs=1e-3)


@pytest.mark.parametrize(
    "mus, expected",
    [
        ((0.548, 0.548, 0.822), [(998.53, 833.96), (742.60, 512.46), (385.15, 174.76)]),  # diffusers convention
        ((0.548, 0.822, 1.919), [(998.53, 833.96), (742.82, 547.19), (385.41, 253.99)]),  # official convention
    ],
)
def test_dmd_schedules_with_linear_shift_match_spec_tables(mus, expected):
    shift = ShiftSettings("linear")
    for stage, (mu, want) in enumerate(zip(mus, expected)):
        mu = calculate_shift({0.548: 540, 0.822: 2160, 1.919: 8640}[mu])
        schedule = pyramid_stage_schedule(CONSTANTS, stage, 2, shift, mu=mu, distilled=True)
        assert schedule.timesteps.tolist() == pytest.approx(want, abs=0.01)


def _diffusers_scheduler(**config):
    from diffusers import HeliosScheduler

    return HeliosScheduler(**config)


@pytest.mark.parametrize("steps", [1, 2, 3, 7])
@pytest.mark.parametrize("shift_kind", [None, "exponential", "linear"])
def test_pyramid_unipc_matches_diffusers(steps, shift_kind):
    reference = _diffusers_scheduler(
        stages=3,
        scheduler_type="unipc",
        use_dynamic_shifting=shift_kind is not None,
        time_shift_type=shift_kind or "exponential",
    )
    generator = torch.Generator().manual_seed(steps)
    for stage in range(3):
        mu = calculate_shift(540 * 4**stage)
        reference.set_timesteps(steps, stage, mu=mu)
        schedule = pyramid_stage_schedule(CONSTANTS, stage, steps, ShiftSettings(shift_kind), mu=mu)
        assert torch.equal(schedule.timesteps, reference.timesteps)
        assert torch.equal(schedule.sigmas, reference.sigmas)
        ours = UniPC(schedule)
        sample_ref = sample_ours = torch.randn(1, 4, 2, 3, 3, generator=generator)
        for t in reference.timesteps:
            velocity = torch.randn(1, 4, 2, 3, 3, generator=generator)
            sample_ref = reference.step(velocity, t, sample_ref, return_dict=False)[0]
            sample_ours = ours.step(velocity, sample_ours)
            assert torch.equal(sample_ours, sample_ref)


@pytest.mark.parametrize("shift_kind", [None, "exponential"])
def test_single_stage_unipc_matches_diffusers(shift_kind):
    import numpy as np

    reference = _diffusers_scheduler(
        stages=1,
        scheduler_type="unipc",
        use_dynamic_shifting=shift_kind is not None,
        time_shift_type=shift_kind or "exponential",
    )
    steps, mu = 6, calculate_shift(8640)
    reference.set_timesteps(steps, sigmas=np.linspace(0.999, 0.0, steps + 1)[:-1], mu=mu)
    schedule = single_stage_schedule(steps, ShiftSettings(shift_kind), mu=mu)
    assert torch.equal(schedule.timesteps, reference.timesteps)
    assert torch.equal(schedule.sigmas, reference.sigmas)
    ours = UniPC(schedule)
    generator = torch.Generator().manual_seed(0)
    sample_ref = sample_ours = torch.randn(2, 4, 3, 4, 4, generator=generator)
    for t in reference.timesteps:
        velocity = torch.randn(2, 4, 3, 4, 4, generator=generator).bfloat16()
        sample_ref = reference.step(velocity, t, sample_ref, return_dict=False)[0]
        sample_ours = ours.step(velocity, sample_ours)
        assert torch.equal(sample_ours, sample_ref)


@pytest.mark.parametrize("amplified", [False, True])
def test_dmd_steps_match_diffusers(amplified):
    from diffusers import HeliosDMDScheduler

    reference = HeliosDMDScheduler(use_dynamic_shifting=True)
    generator = torch.Generator().manual_seed(1)
    for stage in range(3):
        mu = calculate_shift(540 * 4 ** max(stage - 1, 0))
        reference.set_timesteps(2, stage, mu=mu, is_amplify_first_chunk=amplified)
        schedule = pyramid_stage_schedule(
            CONSTANTS, stage, 4 if amplified else 2, ShiftSettings("linear"), mu=mu, distilled=True
        )
        assert torch.equal(schedule.timesteps, reference.timesteps)
        assert torch.equal(schedule.sigmas, reference.sigmas)
        start = torch.randn(1, 4, 2, 3, 3, generator=generator)
        sample_ref = sample_ours = start
        for i, t in enumerate(reference.timesteps):
            velocity = torch.randn(1, 4, 2, 3, 3, generator=generator)
            sample_ref = reference.step(
                velocity,
                t,
                sample_ref,
                return_dict=False,
                cur_sampling_step=i,
                dmd_noisy_tensor=start,
                dmd_sigmas=reference.sigmas,
                dmd_timesteps=reference.timesteps,
                all_timesteps=reference.timesteps,
            )[0]
            sample_ours = dmd_step(schedule, i, velocity, sample_ours, start)
            assert torch.equal(sample_ours, sample_ref)


def test_block_noise_factor_is_robust_and_correlated():
    factor = block_noise_factor(1 / 3)
    assert torch.isfinite(factor).all()
    noise = block_noise((2, 3, 2, 64, 64), 1 / 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    blocks = noise.unflatten(3, (32, 2)).unflatten(5, (32, 2))  # (..., 32, 2, 32, 2)
    block_means = blocks.mean(dim=(4, 6))
    assert block_means.abs().max() < 1e-3  # γ = 1/3: every 2×2 block has zero mean
    assert noise.std().item() == pytest.approx(1.0, abs=0.02)


def test_downsample_noise_keeps_unit_variance_scale():
    noise = torch.randn(1, 16, 9, 48, 80, generator=torch.Generator().manual_seed(0))
    small = downsample_noise(noise, 3)
    assert small.shape == (1, 16, 9, 12, 20)
    # Halving averages 2×2 cells (std ÷ 2), the ×2 restores it: still unit-variance noise.
    assert small.std().item() == pytest.approx(1.0, abs=0.03)
    assert small.mean().abs().item() < 0.03


def test_guidance_formulas():
    cond, uncond = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.allclose(cfg(cond, uncond, 5.0), uncond + 5 * (cond - uncond))
    star = cfg_zero_star(cond, uncond, 5.0)
    alpha = (cond * uncond).sum(dim=(1, 2)) / (uncond**2).sum(dim=(1, 2))
    expected = uncond * alpha[:, None, None] + 5 * (cond - uncond * alpha[:, None, None])
    assert torch.allclose(star, expected, atol=1e-5)
    assert math.isclose(cfg(cond, uncond, 1.0).sum().item(), cond.sum().item(), rel_tol=1e-5)
