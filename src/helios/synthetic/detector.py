"""The synthetic world's own judge: read object colour, shape and motion from frames (no learned model).

Pixels are assigned to the nearest palette colour (background included); each object colour with
enough pixels is one object. Shape comes from how much of its bounding box it fills (square ≈ 1,
circle ≈ π/4, triangle ≈ 1/2); motion from the track of its centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import BACKGROUNDS, COLORS, DIRECTIONS

MIN_PIXELS = 30


@dataclass(frozen=True)
class Detection:
    color: str
    shape: str
    direction: str | None  # None when it barely moves
    speed: float  # pixels per frame
    area: float  # mean pixels per frame
    presence: float  # fraction of frames where it is seen
    # fraction of those frames in which it touches another object colour: two objects fused into one
    # blob (the world's judged scenes never let objects meet, so ground truth scores 0 here)
    merged: float = 0.0


def classify_pixels(frames: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Object colour per pixel: (colour names, labels (T, H, W)), −1 for background and edges.

    The background is the palette background nearest to the frame border; a pixel belongs to an
    object colour when it is far from the background and close to that colour.
    """
    names = list(COLORS)
    values = np.array(list(COLORS.values()), dtype=np.float32)
    pixels = frames.astype(np.float32)
    border = np.concatenate([pixels[0, 0], pixels[0, -1], pixels[0, :, 0], pixels[0, :, -1]])
    backgrounds = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
    background = backgrounds[((np.median(border, 0) - backgrounds) ** 2).sum(-1).argmin()]
    foreground = np.sqrt(((pixels - background) ** 2).sum(-1)) > 60
    distances = ((pixels[..., None, :] - values) ** 2).sum(-1)
    nearest = distances.argmin(-1)
    # Only near-pure colour counts: blended edge pixels would otherwise be read as a third colour.
    pure = distances.min(-1) < 60**2
    return names, np.where(foreground & pure, nearest, -1)


def _shape(fill: float) -> str:
    if fill > 0.9:
        return "square"
    if fill > 0.64:
        return "circle"
    return "triangle"


CONTACT_REACH = 2  # pixels between two colours' regions that count as touching
CONTACT_PIXELS = 3  # touching pixels that make a frame's contact


def _dilated(masks: np.ndarray, reach: int) -> np.ndarray:
    """(T, H, W) masks grown by ``reach`` pixels (square neighbourhood)."""
    grown = masks.copy()
    height, width = masks.shape[1:]
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            ys, yd = (
                (slice(0, height - dy), slice(dy, height)) if dy >= 0 else (slice(-dy, height), slice(0, height + dy))
            )
            xs, xd = (slice(0, width - dx), slice(dx, width)) if dx >= 0 else (slice(-dx, width), slice(0, width + dx))
            grown[:, yd, xd] |= masks[:, ys, xs]
    return grown


def detect(frames: np.ndarray) -> list[Detection]:
    """Objects in a clip of uint8 frames (T, H, W, 3)."""
    names, labels = classify_pixels(frames)
    detections = []
    objects = labels >= 0
    for index, name in enumerate(names):
        masks = labels == index
        counts = masks.sum(axis=(1, 2))
        seen = counts >= MIN_PIXELS
        if seen.mean() < 0.3:
            continue
        centroids, fills = [], []
        for mask in masks[seen]:
            ys, xs = np.nonzero(mask)
            # Keep the main blob: pixels near the median point (stray pixels would inflate the box).
            cx, cy = np.median(xs), np.median(ys)
            reach = 1.5 * np.sqrt(len(xs))
            near = (np.abs(xs - cx) <= reach) & (np.abs(ys - cy) <= reach)
            if near.any():  # scattered pixels may leave no blob around the median point
                xs, ys = xs[near], ys[near]
            centroids.append((xs.mean(), ys.mean()))
            box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
            fills.append(len(xs) / box)
        centroids = np.array(centroids)
        # Shape from the least occluded frames (another object may cover part of this one).
        seen_counts = counts[seen]
        fills = [f for f, c in zip(fills, seen_counts) if c >= 0.9 * seen_counts.max()]
        steps = np.diff(centroids, axis=0)
        velocity = np.median(steps, axis=0) if len(steps) else np.zeros(2)
        speed = float(np.hypot(*velocity))
        direction = None
        if speed > 0.25:
            direction = max(DIRECTIONS, key=lambda d: DIRECTIONS[d][0] * velocity[0] + DIRECTIONS[d][1] * velocity[1])
        others = _dilated(objects & ~masks, CONTACT_REACH)
        contact = (masks & others).sum(axis=(1, 2))[seen] >= CONTACT_PIXELS
        detections.append(
            Detection(
                name,
                _shape(float(np.median(fills))),
                direction,
                speed,
                float(counts[seen].mean()),
                float(seen.mean()),
                float(contact.mean()),
            )
        )
    return detections


STRAY_DISTANCE = 30.0  # levels (RGB distance) from the prompted background that still count as background
OBJECT_REACH = 3  # pixels around pure object colour that are its blended edge
CLEAN_STRAY_SHARE = 0.01  # a clip is clean when at most 1 % of its pixels are stray


def stray_share(frames: np.ndarray, background: str) -> float:
    """Share of pixels that are neither the prompted background (within ``STRAY_DISTANCE``) nor an
    object or its blended edge: speckles, smudges of off-palette colour, a background that turned darker
    or another colour. The per-object scores cannot see these; ground truth scores ~0."""
    _, labels = classify_pixels(frames)
    near_object = _dilated(labels >= 0, OBJECT_REACH)
    colour = np.array(BACKGROUNDS[background], dtype=np.float32)
    off_background = np.sqrt(((frames.astype(np.float32) - colour) ** 2).sum(-1)) > STRAY_DISTANCE
    return float((off_background & ~near_object).mean())
