"""The codec fidelity benchmark (benchmarks/world_codec_fidelity.py): its judge is calibrated on ground truth,
its control fails, and its shape split covers both sizes."""

from __future__ import annotations

import pytest

from helios.synthetic.evaluate import held_out_scenes

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def fidelity():
    return load_benchmark("world_codec_fidelity")


def test_ground_truth_scores_full_marks_at_both_sizes_and_the_wrong_shape_control_fails(fidelity):
    scenes = held_out_scenes(6)
    truth = fidelity.judged(lambda frames: frames, scenes)
    assert truth["shape"] == truth["present"] == 1.0
    assert set(truth["shape_by_size"]) == {"small", "large"} and set(truth["shape_by_size"].values()) == {1.0}
    assert fidelity.wrong_shape_control(scenes) == 0.0
    # a codec that loses everything (a flat frame) loses the objects, and so their shapes
    blank = fidelity.judged(lambda frames: frames * 0 + frames[:1, :1, :1], scenes)
    assert blank["present"] == blank["shape"] == 0.0
