"""HeliosBench's scoring: raw metric → 10-point rating, weighted totals, throughput score.

Facts from the official ``eval/9_merge_all_scores.py`` (see ``shared/spec/official-implementation.md`` §5):
raw scores are clipped to [0, 1]; the i-th threshold (i = 0 … 8) that a score meets gives the rating
10 − i, none gives 1. The official long-video aesthetic table repeats 0.45 / 0.40 at its end, so ratings
3 and 2 cannot be reached; it is fixed here (0.35 / 0.30, as the short table) unless
``official_typo=True`` asks for the released behaviour.
"""

from __future__ import annotations

import math

HIGHER = ">="  # the score must reach the threshold
LOWER = "<="  # the score must stay under it (drifting)

_DRIFT = tuple(round(0.01 * i, 2) for i in range(1, 10))
THRESHOLDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "aesthetic": (HIGHER, (0.70, 0.65, 0.60, 0.55, 0.50, 0.45, 0.40, 0.35, 0.30)),
    "motion_amplitude": (HIGHER, (0.45, 0.40, 0.35, 0.30, 0.25, 0.20, 0.15, 0.10, 0.05)),
    "motion_smoothness": (HIGHER, (0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91)),
    "semantic": (HIGHER, (0.30, 0.29, 0.28, 0.27, 0.26, 0.25, 0.24, 0.23, 0.22)),
    "naturalness": (HIGHER, (0.65, 0.60, 0.55, 0.50, 0.45, 0.40, 0.30, 0.25, 0.20)),
    "drift_aesthetic": (LOWER, _DRIFT),
    "drift_smoothness": (LOWER, _DRIFT),
    "drift_semantic": (LOWER, _DRIFT),
    "drift_naturalness": (LOWER, (0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22)),
}
# This project's synthetic-world analogue (not the paper's): the strict judge's accuracy replaces the
# ViCLIP similarity, rated in tenths (≥ 0.9 → 10 … ≥ 0.1 → 2), and weighted as the semantic metric.
THRESHOLDS["semantic_world"] = (HIGHER, tuple(round(0.9 - 0.1 * i, 1) for i in range(9)))
THRESHOLDS["drift_semantic_world"] = (LOWER, (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18))
# The CLIP frame–text fallback for ViCLIP's semantic score: the semantic table and weight, its own name.
THRESHOLDS["semantic_clip"] = THRESHOLDS["semantic"]
THRESHOLDS["drift_semantic_clip"] = THRESHOLDS["drift_semantic"]
WEIGHT_OF = {
    "semantic_world": "semantic",
    "drift_semantic_world": "drift_semantic",
    "semantic_clip": "semantic",
    "drift_semantic_clip": "drift_semantic",
}
OFFICIAL_LONG_AESTHETIC = (0.70, 0.65, 0.60, 0.55, 0.50, 0.45, 0.40, 0.45, 0.40)

SHORT_WEIGHTS = {
    "aesthetic": 0.10,
    "motion_amplitude": 0.10,
    "motion_smoothness": 0.10,
    "semantic": 0.35,
    "naturalness": 0.35,
}
LONG_WEIGHTS = {
    "aesthetic": 0.03,
    "motion_amplitude": 0.03,
    "motion_smoothness": 0.03,
    "semantic": 0.255,
    "naturalness": 0.255,
    **dict.fromkeys(("drift_aesthetic", "drift_smoothness", "drift_semantic", "drift_naturalness"), 0.099),
}


def rating(metric: str, score: float, long: bool = False, official_typo: bool = False) -> int:
    """The 10-point rating of a raw ``score`` of ``metric``."""
    if metric not in THRESHOLDS:
        raise ValueError(f"unknown HeliosBench metric {metric!r} (known: {', '.join(THRESHOLDS)})")
    if not math.isfinite(score):
        raise ValueError(f"{metric}: the score is not a finite number ({score})")
    direction, thresholds = THRESHOLDS[metric]
    if metric == "aesthetic" and long and official_typo:
        thresholds = OFFICIAL_LONG_AESTHETIC
    score = min(max(score, 0.0), 1.0)
    for i, threshold in enumerate(thresholds):
        if (score >= threshold) if direction == HIGHER else (score <= threshold):
            return 10 - i
    return 1


def weighted_total(ratings: dict[str, int], long: bool = False) -> dict:
    """The weighted total of ratings. With every metric of the set present: the official total. With
    some missing (naturalness needs a closed model; model-based metrics need user weights): a partial
    total over those present, the weights renormalised — labelled, never passed off as the official one."""
    weights = LONG_WEIGHTS if long else SHORT_WEIGHTS
    ratings = {WEIGHT_OF.get(m, m): r for m, r in ratings.items()}
    unknown = sorted(set(ratings) - set(weights))
    if unknown:
        raise ValueError(f"ratings for metrics outside the {'long' if long else 'short'} set: {', '.join(unknown)}")
    present = {m: w for m, w in weights.items() if m in ratings}
    if not present:
        raise ValueError("no ratings to total")
    # (the official long weights sum to 0.996, not 1: a complete total is their plain weighted sum)
    total = sum(ratings[m] * w for m, w in present.items()) * sum(weights.values()) / sum(present.values())
    missing = [m for m in weights if m not in ratings]
    return {"total": round(total, 4), "complete": not missing, "missing": missing}


def throughput_score(fps: float) -> int:
    """1 at ≤ 3.2 FPS, ⌈FPS / 3.2⌉ below 32 FPS, 10 from 32 FPS."""
    if not math.isfinite(fps) or fps < 0:
        raise ValueError(f"FPS must be a finite non-negative number, got {fps}")
    if fps <= 3.2:
        return 1
    if fps >= 32:
        return 10
    return math.ceil(fps / 3.2)
