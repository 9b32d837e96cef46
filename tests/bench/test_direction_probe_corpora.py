"""The direction probe (benchmarks/world_direction_probe.py): its training corpora (--corpus) each change only
the property they name, so a difference between arms can be put down to it; its contact sheet of clips."""

from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest

from helios.synthetic.world import DIRECTIONS

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("world_direction_probe")


def corpus(probe, name: str, count: int = 400):
    rng = np.random.default_rng(0)
    return [probe.training_scene(name, i, rng, count) for i in range(count)]


def start_gap(scenes) -> float:
    """Mean start x of right-movers minus that of left-movers (first object)."""
    starts = {d: [s.objects[0].x for s in scenes if s.objects[0].direction == d] for d in ("left", "right")}
    return float(np.mean(starts["right"]) - np.mean(starts["left"]))


def test_world_corpus_ties_the_start_to_the_direction_and_unbiased_does_not(probe):
    world, unbiased = corpus(probe, "world"), corpus(probe, "unbiased")
    assert start_gap(world) < -0.2  # the control: right-movers start on the left
    assert abs(start_gap(unbiased)) < 0.05
    # unbiased keeps everything but the starts: the same captions, scene by scene
    assert [s.caption() for s in world] == [s.caption() for s in unbiased]


def test_placed_scenes_are_centre_scenes_started_anywhere_in_the_middle(probe):
    placed, centre = corpus(probe, "placed"), corpus(probe, "centre")
    for scenes in (placed, centre):
        assert all(len(s.objects) == 1 and s.objects[0].speed == "slowly" and not s.events for s in scenes)
        assert {s.objects[0].direction for s in scenes} == set(DIRECTIONS)
    assert {(s.objects[0].x, s.objects[0].y) for s in centre} == {(0.5, 0.5)}
    xs, ys = np.array([s.objects[0].x for s in placed]), np.array([s.objects[0].y for s in placed])
    assert 0.3 <= xs.min() and xs.max() <= 0.7 and 0.35 <= ys.min() and ys.max() <= 0.65
    assert xs.std() > 0.08 and ys.std() > 0.06


def test_mixed_alternates_centre_and_world_scenes(probe):
    mixed = corpus(probe, "mixed", 40)
    assert all((s.objects[0].x, s.objects[0].y) == (0.5, 0.5) for s in mixed[1::2])
    assert [s.caption() for s in mixed[0::2]] == [s.caption() for s in corpus(probe, "world", 40)[0::2]]


def test_with_direction_changes_only_the_first_objects_direction(probe):
    two = next(s for s in corpus(probe, "world") if len(s.objects) == 2)
    turned = probe.with_direction(two, "up")
    assert turned.objects[0].direction == "up" and turned.objects[1] == two.objects[1]


def test_widening_spreads_the_starts_from_the_centre_and_training_reaches_them_over_the_ramp(probe):
    widening = corpus(probe, "widening")
    offsets = np.array([abs(s.objects[0].x - 0.5) + abs(s.objects[0].y - 0.5) for s in widening])
    assert offsets[0] == 0 and offsets[:40].max() < 0.04 and offsets[-100:].max() > 0.25
    assert offsets[-100:].mean() > 3 * offsets[:100].mean()
    ramp = Namespace(corpus="widening", batch=16, ramp_steps=100)
    assert [probe.reachable(400, step, ramp) for step in (1, 10, 50, 100, 500)] == [16, 40, 200, 400, 400]
    assert probe.reachable(400, 1, Namespace(corpus="placed", batch=16, ramp_steps=100)) == 400


def test_the_contact_sheet_shows_each_clips_first_middle_and_last_frame(probe):
    clips = [np.random.default_rng(i).integers(0, 255, (33, 8, 12, 3), dtype=np.uint8) for i in range(2)]
    sheet = probe.contact_rows(clips)
    assert sheet.shape == (16, 36, 3)
    assert np.array_equal(sheet[8:, :12], clips[1][0]) and np.array_equal(sheet[:8, 12:24], clips[0][16])
    assert np.array_equal(sheet[8:, 24:], clips[1][32])


def test_world_widening_starts_the_world_scenes_at_shared_anchors_and_ends_at_the_drawn_starts(probe):
    from helios.synthetic.world import start_anchor

    world, widening = corpus(probe, "world", 200), corpus(probe, "world-widening", 200)
    assert [s.caption() for s in widening] == [s.caption() for s in world]  # only the starts differ
    # the recipe's curriculum transform: first every object on its slot's anchor, whatever its direction
    assert all(
        (o.x, o.y) == pytest.approx(start_anchor(i, len(s.objects)), abs=0.015)
        for s in widening[:4]
        for i, o in enumerate(s.objects)
    )
    # where the world's start tells the direction (right-movers start 0.4 to the left), the first scenes' do not
    assert abs(start_gap(widening[:20])) < 0.05 and start_gap(world[:20]) < -0.3
    assert widening[100:] == world[100:]  # from the middle on as drawn, as in the recipe's corpus
    assert probe.reachable(200, 1, Namespace(corpus="world-widening", batch=16, ramp_steps=100)) == 16
