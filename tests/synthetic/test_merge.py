"""Merging an evaluation split over processes gives the figures of one run: shares weighted by what they
count, the I2V median from the pooled errors, a clear error for parts that cannot be merged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helios.synthetic.merge import merge_evaluations


def adherence(prompts: int, objects: int, color: float, exact: float, clean: float) -> dict:
    card = {"present": color, "color": color}
    return {
        "prompts": prompts,
        "objects": objects,
        "chance": {"color": 1 / 6},
        "model": card,
        "ground_truth": {"present": 1.0, "color": 1.0},
        "ground_truth_through_codec": {"present": 1.0, "color": 1.0},
        "wrong_prompt_controls": {"color": 0.0},
        "exact_object_count": {"model": exact},
        "clean_background": {"model": {"clips": clean, "stray": 0.01}},
    }


def conditioning(scenes: int, errors: list[float], nearer: list[bool], kept: list[bool]) -> dict:
    return {
        "scenes": scenes,
        "i2v_start_within_8px": sum(e <= 8 for e in errors) / len(errors),
        "i2v_ground_truth_within_8px": 1.0,
        "i2v_objects": len(errors),
        "i2v_start_errors_px": errors,
        "i2v_nearer_input_than_mirrored": sum(nearer) / len(nearer),
        "i2v_nearer_objects": len(nearer),
        "i2v_nearer_ground_truth": 1.0,
        "i2v_nearer_mirrored_control": 0.0,
        "i2v_calibration_objects": [len(nearer), len(nearer)],
        "v2v_direction_kept": sum(kept) / len(kept),
        "v2v_objects": len(kept),
    }


def test_shares_are_weighted_by_what_they_count_and_the_median_is_pooled():
    parts = [
        {"adherence": adherence(2, 3, color=2 / 3, exact=0.5, clean=1.0), "seconds": 10.0},
        {"adherence": adherence(1, 1, color=0.0, exact=1.0, clean=0.0), "seconds": 5.0},
        {"conditioning": conditioning(2, [1.0, 30.0, 50.0], [True, True, False], [True]), "seconds": 7.0},
        {"conditioning": conditioning(1, [4.0], [False], [False, False, True]), "drift": {"chunks": 44}},
    ]
    merged = merge_evaluations(parts)
    a, c = merged["adherence"], merged["conditioning"]
    assert (a["prompts"], a["objects"]) == (3, 4) and merged["process_seconds"] == 22.0
    assert a["model"]["color"] == pytest.approx(0.5)  # 2 of 4 objects, not the mean of 2/3 and 0
    assert a["exact_object_count"]["model"] == pytest.approx(2 / 3)  # (1 + 1) of 3 prompts
    assert a["clean_background"]["model"]["clips"] == pytest.approx(2 / 3)
    assert a["wrong_prompt_controls"]["color"] == 0.0 and a["ground_truth"]["color"] == 1.0
    assert c["scenes"] == 3 and c["i2v_objects"] == 4 and c["i2v_start_within_8px"] == pytest.approx(0.5)
    assert c["i2v_median_start_error_px"] == pytest.approx(17.0)  # median of 1, 4, 30, 50
    assert c["i2v_nearer_input_than_mirrored"] == pytest.approx(0.5) and c["i2v_calibration_objects"] == [4, 4]
    assert c["v2v_direction_kept"] == pytest.approx(0.5) and c["v2v_objects"] == 4
    assert merged["drift"] == {"chunks": 44}


def test_the_i2v_direction_test_merges_by_objects():
    def part(objects: int, given: float, reversed_: float) -> dict:
        shares = {"given_caption": given, "reversed_caption": reversed_, "ground_truth": 1.0}
        return {
            "i2v_direction": {
                "scenes": 1,
                "objects": objects,
                "chance": 0.25,
                **shares,
                "reversed_ground_truth_control": 0.0,
            }
        }

    merged = merge_evaluations([part(3, 1 / 3, 0.0), part(1, 1.0, 1.0)])["i2v_direction"]
    assert (merged["scenes"], merged["objects"], merged["chance"]) == (2, 4, 0.25)
    assert merged["given_caption"] == pytest.approx(0.5) and merged["reversed_caption"] == pytest.approx(0.25)
    assert merged["ground_truth"] == 1.0 and merged["reversed_ground_truth_control"] == 0.0


def test_parts_that_cannot_be_merged_are_refused_with_the_reason():
    old = conditioning(1, [4.0], [True], [True])
    del old["i2v_start_errors_px"]
    with pytest.raises(ValueError, match="i2v_start_errors_px"):
        merge_evaluations([{"conditioning": old}])
    with pytest.raises(ValueError, match="2 parts ran it"):
        merge_evaluations([{"drift": {}}, {"drift": {}}])
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_evaluations([])


def test_the_command_merges_files_and_names_an_unreadable_one(tmp_path):
    paths = []
    for i, part in enumerate([adherence(2, 3, 2 / 3, 0.5, 1.0), adherence(1, 1, 0.0, 1.0, 0.0)]):
        paths.append(tmp_path / f"part{i}.json")
        paths[-1].write_text(json.dumps({"adherence": part, "seconds": 1.0}))
    command = [sys.executable, "-m", "helios.recipes.evaluate_world", "--out", str(tmp_path / "merged.json"), "--merge"]
    done = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "merged.json").read_text())["adherence"]["model"]["color"] == pytest.approx(0.5)
    (tmp_path / "broken.json").write_text("{")
    failed = subprocess.run([*command, str(tmp_path / "broken.json")], capture_output=True, text=True)
    assert failed.returncode != 0 and "cannot read" in failed.stderr and "broken.json" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_split_run_merged_gives_the_figures_of_one_run(tmp_path, monkeypatch):
    """End to end on the shipped model: ``--skip N`` samples scene N + i with seed N + i, so two parts
    merged equal one run on every figure (the I2V median included)."""
    from helios.recipes import evaluate_world

    def run(out: str, *options: str) -> dict:
        argv = ["evaluate_world", "--drift-frames", "0", "--out", str(tmp_path / out), *options]
        monkeypatch.setattr(sys, "argv", argv)
        evaluate_world.main()
        return json.loads((tmp_path / out).read_text())

    whole = run("whole.json", "--prompts", "2", "--conditioning", "2")
    run("a.json", "--prompts", "1", "--conditioning", "1")
    run("b.json", "--skip", "1", "--prompts", "1", "--conditioning", "1")
    merged = run("merged.json", "--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"))

    def leaves(tree, path=""):  # {"a/b": value} of every figure (pytest.approx compares flat mappings)
        if isinstance(tree, dict):
            return {
                k: v for key, sub in tree.items() if key != "tables" for k, v in leaves(sub, f"{path}/{key}").items()
            }
        if isinstance(tree, list):
            return {f"{path}/{i}": value for i, value in enumerate(tree)}
        return {path: tree}

    for section in ("adherence", "conditioning"):
        expected = leaves(whole[section])
        assert set(leaves(merged[section])) == set(expected), section
        assert leaves(merged[section]) == pytest.approx(expected, rel=1e-12), section
