"""Adaptive sampling calibrated per codec: thresholds from the codec's own latents of clean video,
stored with the model; clean generation flags nothing, an injected drift is flagged, and the released
Wan thresholds — the control — misfire on this codec."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from helios import HeliosPipeline
from helios.generation.drift import DriftMonitor, DriftSettings, calibrate
from helios.generation.loading import DEFAULT_MODEL_DIR, DRIFT_FILE
from helios.synthetic.evaluate import held_out_scenes
from helios.synthetic.world import render


def test_calibration_takes_a_margin_over_the_largest_clean_deviation():
    steady = [torch.full((1, 2, 3, 2, 2), 1.0), torch.full((1, 2, 3, 2, 2), 1.1), torch.full((1, 2, 3, 2, 2), 1.3)]
    steady[2][0, :, :, 0] = 2.0  # some variance in the last chunk
    settings = calibrate([steady], margin=2.0)
    monitor, deviations = DriftMonitor(), []
    for chunk in steady:
        deviations.append(monitor.deviation(chunk))
        monitor.observe(chunk)
    largest_mu = max(d[0] for d in deviations[1:])
    largest_sigma = max(d[1] for d in deviations[1:])
    assert settings.delta_mu == pytest.approx(2 * largest_mu) and settings.delta_sigma == pytest.approx(
        2 * largest_sigma
    )
    with pytest.raises(ValueError, match="at least two chunks"):
        calibrate([[steady[0]]])
    with pytest.raises(ValueError, match="positive finite"):
        DriftSettings.from_dict({"delta_mu": float("nan")})
    with pytest.raises(ValueError, match="unknown drift settings: delta"):
        DriftSettings.from_dict({"delta": 1.0})


@pytest.fixture(scope="module")
def world():
    return HeliosPipeline.from_pretrained(device="cpu")


def test_the_default_model_ships_thresholds_for_its_codec(world):
    stored = DriftSettings.from_dict(json.loads((DEFAULT_MODEL_DIR / DRIFT_FILE).read_text()))
    assert world.drift_settings == stored and stored != DriftSettings()


def test_clean_generation_flags_nothing_and_the_wan_thresholds_misfire(world):
    scene = held_out_scenes(2)[1]  # two objects (a one-object scene on gray may pass Wan's thresholds too)
    calibrated = world.generate(scene.caption(), num_frames=99, seed=0, adaptive=True, steps=1)
    released = world.generate(scene.caption(), num_frames=99, seed=0, adaptive=DriftSettings(), steps=1)
    assert not any(c.drift for c in calibrated.chunks)
    assert any(c.drift for c in released.chunks)  # the control: thresholds of another latent space


def test_an_injected_colour_drift_is_flagged(world):
    for scene in held_out_scenes(3):
        video = render(scene, 165).astype(np.float32)
        video[99:] = np.clip(video[99:] * 1.6 + 60, 0, 255)  # from chunk 3 on, every colour drifts brighter
        pixels = torch.from_numpy(video).permute(3, 0, 1, 2)[None] / 127.5 - 1
        latents = [world.codec.encode(pixels[:, :, i * 33 : (i + 1) * 33]) for i in range(5)]
        monitor = DriftMonitor(world.drift_settings)
        flags = [monitor.observe(z) for z in latents]
        assert flags[:3] == [False, False, False] and flags[3], scene.caption()
        # the paper's rule alone (both statistics must move) misses it: the variance of a small
        # object on a plain background hardly changes when every colour brightens
        both_only = DriftMonitor(replace(world.drift_settings, gross_factor=0.0))
        assert not any(both_only.observe(z) for z in latents)
