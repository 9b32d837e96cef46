"""The strict judge of the synthetic world: does a clip show what its caption says, attribute by attribute?

Every prompted object is matched to a detected object (same colour first, else any unmatched one, so
a wrong colour does not hide a right shape), then judged on colour, shape, size, direction and speed;
an object with no match is absent and fails every attribute — so does one fused with another object
into a single blob (its colour touches another object's in most frames; judged scenes never let two
objects meet). Each score comes with its chance level
(what a model that ignores the prompt gets) and two kinds of control:

* calibration: ground-truth renders, and ground truth through the codec, must score near 100 %;
* wrong prompts: the same ground truth judged against a caption with one attribute changed on every
  object must score near 0 % on that attribute — a metric that cannot fail is not a metric.

I2V and V2V are judged by position and motion: generated objects must start where the input image put
them (centroid distance in pixels), and a continued clip must keep each object's direction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .detector import Detection, classify_pixels, detect
from .world import COLORS, DIRECTIONS, HEIGHT, SHAPES, SIZES, SPEEDS, WIDTH, Scene, trajectory

ATTRIBUTES = ("color", "shape", "size", "direction", "speed")
# A model that ignores the prompt matches a named attribute by chance this often.
CHANCE = {
    "color": 1 / len(COLORS),
    "shape": 1 / len(SHAPES),
    "size": 1 / len(SIZES),
    "direction": 1 / len(DIRECTIONS),
    "speed": 1 / len(SPEEDS),
}
MERGED = 0.25  # an object touching another object's colour in more of its frames than this is not one object
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def expected_area(shape: str, size: str, height: int = HEIGHT) -> float:
    """Pixels covered by a world shape (see ``world._shape_alpha``)."""
    r = SIZES[size] * height
    if shape == "circle":
        return np.pi * r**2
    if shape == "square":
        return (2 * 0.85 * r) ** 2
    return 3 * np.sqrt(3) * (1.15 * r / 2) ** 2  # equilateral triangle with inradius 1.15·r/2


def judgeable(scene: Scene, frames: int, height: int = HEIGHT, width: int = WIDTH) -> bool:
    """Whether every object stays visible for the whole clip: no two objects ever overlap. An object
    hidden behind another cannot be judged from pixels by anyone, so prompts that hide one are not
    used for evaluation (ground truth then scores 100 %)."""
    paths = [trajectory(o, list(scene.events), i, frames, height, width) for i, o in enumerate(scene.objects)]
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            reach = (SIZES[scene.objects[i].size] + SIZES[scene.objects[j].size]) * height
            if np.hypot(*(paths[i] - paths[j]).T).min() < reach:
                return False
    return True


def judge_size(detection: Detection, height: int = HEIGHT) -> str:
    """small or large: the detected area against the geometric mean of the two sizes of its shape."""
    threshold = np.sqrt(
        expected_area(detection.shape, "small", height) * expected_area(detection.shape, "large", height)
    )
    return "large" if detection.area > threshold else "small"


def judge_speed(detection: Detection, width: int = WIDTH) -> str:
    """slowly or quickly: pixels per frame against the geometric mean of the two world speeds."""
    threshold = np.sqrt(SPEEDS["slowly"] * SPEEDS["quickly"]) * width
    return "quickly" if detection.speed > threshold else "slowly"


def match(scene: Scene, detections: list[Detection]) -> list[Detection | None]:
    """One detection per prompted object: the same colour first, then any detection left over."""
    left = list(detections)
    matched: list[Detection | None] = []
    for obj in scene.objects:
        same = next((d for d in left if d.color == obj.color), None)
        matched.append(same)
        if same is not None:
            left.remove(same)
    for i, found in enumerate(matched):
        if found is None and left:
            matched[i] = left.pop(0)
    return matched


def exact_count(detections: list[Detection], scene: Scene) -> bool:
    """Whether the clip shows exactly the prompted objects: no extra object, none missing. The per-object
    scores match one detection to each prompted object and cannot see extra ones. (The detector groups
    pixels by colour: a stray fragment of another colour counts as an extra object, a same-colour copy
    merges with its original and fails size or shape instead.)"""
    return len(detections) == len(scene.objects)


def judge_clip(frames: np.ndarray, scene: Scene) -> list[dict[str, bool]]:
    """Per prompted object: present, and each attribute right or wrong."""
    return judge_detections(detect(frames), scene, *frames.shape[1:3])


def judge_detections(
    detections: list[Detection], scene: Scene, height: int = HEIGHT, width: int = WIDTH
) -> list[dict[str, bool]]:
    """:func:`judge_clip` on detections already made (one detection pass can be judged against
    several captions: the prompt and its wrong-prompt controls)."""
    results = []
    for obj, found in zip(scene.objects, match(scene, detections)):
        if found is None or found.merged > MERGED:  # absent, or fused with another object into one blob
            results.append({"present": False, **{a: False for a in ATTRIBUTES}})
            continue
        results.append(
            {
                "present": True,
                "color": found.color == obj.color,
                "shape": found.shape == obj.shape,
                "size": judge_size(found, height) == obj.size,
                "direction": found.direction == obj.direction,
                "speed": found.direction is not None and judge_speed(found, width) == obj.speed,
            }
        )
    return results


@dataclass
class Scorecard:
    """Per-attribute accuracy over many prompted objects, printed beside its chance level."""

    counts: dict[str, int]
    objects: int = 0

    @classmethod
    def empty(cls) -> Scorecard:
        return cls({key: 0 for key in ("present", *ATTRIBUTES)})

    def add(self, results: list[dict[str, bool]]) -> None:
        for result in results:
            self.objects += 1
            for key, ok in result.items():
                self.counts[key] += bool(ok)

    def accuracy(self) -> dict[str, float]:
        return {key: value / max(self.objects, 1) for key, value in self.counts.items()}

    def table(self, title: str) -> str:
        rows = [f"{title} ({self.objects} objects)", "| attribute | accuracy | chance |", "|---|---|---|"]
        for key, value in self.accuracy().items():
            chance = f"{CHANCE[key]:.0%}" if key in CHANCE else "–"
            rows.append(f"| {key} | {value:.1%} | {chance} |")
        return "\n".join(rows)


def wrong_prompt(scene: Scene, attribute: str) -> Scene:
    """The scene's caption with ``attribute`` changed on every object (the control that must fail)."""
    used = {o.color for o in scene.objects}
    spare = [c for c in COLORS if c not in used]
    objects = []
    for i, obj in enumerate(scene.objects):
        if attribute == "color":
            obj = replace(obj, color=spare[i])
        elif attribute == "shape":
            obj = replace(obj, shape=SHAPES[(SHAPES.index(obj.shape) + 1) % len(SHAPES)])
        elif attribute == "size":
            obj = replace(obj, size="large" if obj.size == "small" else "small")
        elif attribute == "direction":
            obj = replace(obj, direction=reversed_direction(obj.direction))
        elif attribute == "speed":
            obj = replace(obj, speed="quickly" if obj.speed == "slowly" else "slowly")
        else:
            raise ValueError(f"unknown attribute {attribute!r}")
        objects.append(obj)
    return replace(scene, objects=tuple(objects))


def centroid(frame: np.ndarray, color: str) -> tuple[float, float] | None:
    """The centre (x, y) of the pixels of ``color`` in one frame, or None when it is not there."""
    names, labels = classify_pixels(frame[None])
    ys, xs = np.nonzero(labels[0] == names.index(color))
    if len(xs) < 30:
        return None
    return float(xs.mean()), float(ys.mean())


def track(frames: np.ndarray, color: str) -> np.ndarray:
    """(frames, 2) centroid (x, y) of ``color`` per frame, NaN where it is not seen."""
    centres = [centroid(frame, color) for frame in frames]
    return np.array([c if c is not None else (np.nan, np.nan) for c in centres], dtype=np.float64)


def track_path(centres: np.ndarray, direction: str, min_seen: int = 10) -> dict[str, float] | None:
    """How an object's track moves over the frames it is seen in: path length and net displacement
    (pixels), straightness (net ÷ path: 1 for the world's constant-velocity objects, near 0 for one that
    wanders) and the cosine between the net displacement and ``direction`` (0 for a direction that
    ignores the word). None when seen in fewer than ``min_seen`` frames."""
    seen = centres[~np.isnan(centres[:, 0])]
    if len(seen) < min_seen:
        return None
    path = float(np.hypot(*np.diff(seen, axis=0).T).sum())
    net = seen[-1] - seen[0]
    length = float(np.hypot(*net))
    unit = np.array(DIRECTIONS[direction], dtype=np.float64)
    return {
        "path_px": path,
        "net_px": length,
        "straightness": length / path if path > 0 else 0.0,
        "cosine": float(net @ unit) / length if length > 0 else 0.0,
    }


def reversed_direction(direction: str) -> str:
    return _OPPOSITE[direction]


def i2v_start_errors(image: np.ndarray, generated: np.ndarray, scene: Scene) -> list[float | None]:
    """Per object of the input image: pixels between its centre there and in the first generated frame
    (None: missing from the continuation)."""
    errors = []
    for obj in scene.objects:
        start, first = centroid(image, obj.color), centroid(generated[0], obj.color)
        errors.append(
            None if start is None or first is None else float(np.hypot(start[0] - first[0], start[1] - first[1]))
        )
    return errors


def v2v_directions_kept(clip: np.ndarray, generated: np.ndarray, frames: int = 16) -> list[bool]:
    """Per object moving at the end of the input clip: does the continuation move the same way?"""
    before = {d.color: d.direction for d in detect(clip[-frames:]) if d.direction is not None}
    after = {d.color: d.direction for d in detect(generated[:frames])}
    return [after.get(color) == direction for color, direction in before.items()]
