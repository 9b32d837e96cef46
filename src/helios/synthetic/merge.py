"""Merge the results of one evaluation split over processes (``evaluate_world --skip``) into the figures a
single run gives: every share weighted by what it counts (objects, prompts, scenes), the I2V median
recomputed from the pooled start errors. Parts must not overlap (the caller picks their ranges)."""

from __future__ import annotations

import numpy as np

_SCORECARDS = ("model", "ground_truth", "ground_truth_through_codec", "wrong_prompt_controls")


def _mean(values: list, weights: list) -> float | None:
    """Weighted mean, leaving out parts with no value or no weight (a share of nothing)."""
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def _mean_by_key(rows: list[dict], weights: list) -> dict:
    return {key: _mean([row[key] for row in rows], weights) for key in rows[0]}


def _need(parts: list[dict], keys: tuple[str, ...], what: str) -> None:
    for part in parts:
        missing = [key for key in keys if key not in part]
        if missing:
            raise ValueError(
                f"cannot merge {what}: a part lacks {', '.join(missing)} (made by an older evaluate_world?)"
            )


def merge_adherence(parts: list[dict]) -> dict:
    _need(parts, ("prompts", "objects", "exact_object_count", "clean_background", *_SCORECARDS), "adherence")
    objects = [part["objects"] for part in parts]
    prompts = [part["prompts"] for part in parts]
    return {
        "prompts": sum(prompts),
        "objects": sum(objects),
        "chance": parts[0].get("chance"),
        **{name: _mean_by_key([part[name] for part in parts], objects) for name in _SCORECARDS},
        "exact_object_count": _mean_by_key([part["exact_object_count"] for part in parts], prompts),
        "clean_background": {
            name: _mean_by_key([part["clean_background"][name] for part in parts], prompts)
            for name in parts[0]["clean_background"]
        },
    }


def merge_conditioning(parts: list[dict]) -> dict:
    counts = ("scenes", "i2v_objects", "i2v_start_errors_px", "i2v_nearer_objects", "i2v_calibration_objects")
    _need(parts, (*counts, "v2v_objects"), "conditioning")

    def total(key: str) -> int:
        return sum(part[key] for part in parts)

    def mean(key: str, weights: list) -> float | None:
        return _mean([part[key] for part in parts], weights)

    i2v = [part["i2v_objects"] for part in parts]
    truth, control = ([part["i2v_calibration_objects"][i] for part in parts] for i in (0, 1))
    errors = [error for part in parts for error in part["i2v_start_errors_px"]]
    return {
        "scenes": total("scenes"),
        "i2v_start_within_8px": mean("i2v_start_within_8px", i2v),
        "i2v_ground_truth_within_8px": mean("i2v_ground_truth_within_8px", i2v),
        "i2v_objects": total("i2v_objects"),
        "i2v_median_start_error_px": float(np.median(errors)) if errors else None,
        "i2v_start_errors_px": errors,
        "i2v_nearer_input_than_mirrored": mean(
            "i2v_nearer_input_than_mirrored", [p["i2v_nearer_objects"] for p in parts]
        ),
        "i2v_nearer_objects": total("i2v_nearer_objects"),
        "i2v_nearer_ground_truth": mean("i2v_nearer_ground_truth", truth),
        "i2v_nearer_mirrored_control": mean("i2v_nearer_mirrored_control", control),
        "i2v_calibration_objects": [sum(truth), sum(control)],
        "v2v_direction_kept": mean("v2v_direction_kept", [part["v2v_objects"] for part in parts]),
        "v2v_objects": total("v2v_objects"),
    }


def merge_i2v_direction(parts: list[dict]) -> dict:
    _need(parts, ("scenes", "objects", "given_caption", "reversed_caption"), "i2v_direction")
    objects = [part["objects"] for part in parts]
    shares = ("given_caption", "reversed_caption", "ground_truth", "reversed_ground_truth_control")
    return {
        "scenes": sum(part["scenes"] for part in parts),
        "objects": sum(objects),
        "chance": parts[0].get("chance"),
        **{key: _mean([part[key] for part in parts], objects) for key in shares},
    }


def merge_evaluations(results: list[dict]) -> dict:
    """One evaluate_world result from several: adherence and conditioning merged, drift taken from the one
    part that ran it (two drift runs are an error), seconds summed as process-seconds."""
    if not results:
        raise ValueError("nothing to merge: no evaluation results given")
    merged: dict = {"parts": len(results), "process_seconds": sum(r.get("seconds", 0.0) for r in results)}
    merges = (
        ("adherence", merge_adherence),
        ("conditioning", merge_conditioning),
        ("i2v_direction", merge_i2v_direction),
    )
    for name, merge in merges:
        parts = [r[name] for r in results if name in r]
        if parts:
            merged[name] = merge(parts)
    drifts = [r["drift"] for r in results if "drift" in r]
    if len(drifts) > 1:
        raise ValueError(f"cannot merge drift: {len(drifts)} parts ran it (one long video is one figure)")
    if drifts:
        merged["drift"] = drifts[0]
    return merged
