"""A procedurally generated video world with captions, deterministic by seed.

Scenes hold one or two shapes (circle, square, triangle) of a colour and size that move in a
direction at a speed and bounce off the walls, on a plain background. Events change an object's
colour or direction at a given frame, so a scene has a *timeline* of captions — something for
interactive prompts to show. Captions come from the scene description, e.g.
"a large red circle moves right quickly on a black background".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import HistorySettings

SHAPES = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45),
    "green": (45, 195, 70),
    "blue": (55, 100, 235),
    "yellow": (240, 215, 45),
    "white": (240, 240, 240),
    "purple": (165, 65, 210),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (14, 14, 18), "gray": (105, 105, 110), "navy": (18, 28, 72)}
DIRECTIONS: dict[str, tuple[int, int]] = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
SPEEDS: dict[str, float] = {"slowly": 0.006, "quickly": 0.014}  # fraction of the frame width per frame
SIZES: dict[str, float] = {"small": 0.10, "large": 0.17}  # radius as a fraction of the frame height

HEIGHT, WIDTH = 128, 192  # latent 16×24: divisible by 8, so the 3-stage pyramid works
# Scenes change only at chunk boundaries of the released geometry (9 latent frames × 4 − 3).
CHUNK_FRAMES = HistorySettings().chunk_video_frames(temporal_factor=4)
FPS = 24


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    size: str
    direction: str
    speed: str
    x: float  # start centre, fractions of width / height
    y: float

    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.shape} moves {self.direction} {self.speed}"


@dataclass(frozen=True)
class Event:
    frame: int
    target: int  # index of the object
    kind: str  # "color" | "direction"
    value: str


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[ObjectSpec, ...]
    events: tuple[Event, ...] = field(default_factory=tuple)

    def objects_at(self, frame: int) -> tuple[ObjectSpec, ...]:
        """Object descriptions after the events up to ``frame`` (positions are not tracked here)."""
        objects = list(self.objects)
        for event in sorted(self.events, key=lambda e: e.frame):
            if event.frame <= frame:
                attribute = "color" if event.kind == "color" else "direction"
                objects[event.target] = replace(objects[event.target], **{attribute: event.value})
        return tuple(objects)

    def caption(self, frame: int = 0) -> str:
        parts = [o.phrase() for o in self.objects_at(frame)]
        return " and ".join(parts) + f" on a {self.background} background"

    def section_captions(self, num_frames: int, height: int = HEIGHT, width: int = WIDTH) -> list[str]:
        """One caption per whole chunk, true to what that chunk shows: colours after the events up to
        its first frame, and each object's direction as it moves during most of the chunk — after a
        bounce off a wall "moves right" becomes "moves left". (``caption(0)`` describes only the start.)"""
        events = list(self.events)
        paths = [trajectory(o, events, i, num_frames + 1, height, width) for i, o in enumerate(self.objects)]
        captions = []
        for start in range(0, num_frames - CHUNK_FRAMES + 1, CHUNK_FRAMES):
            objects = [
                replace(obj, direction=_dominant_direction(path[start : start + CHUNK_FRAMES + 1]))
                for obj, path in zip(self.objects_at(start), paths)
            ]
            parts = [o.phrase() for o in objects]
            captions.append(" and ".join(parts) + f" on a {self.background} background")
        return captions

    def timeline(self) -> list[tuple[int, str]]:
        """(start frame, caption) for the start and every event."""
        frames = [0] + sorted({e.frame for e in self.events})
        return [(f, self.caption(f)) for f in frames]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(
            background=data["background"],
            objects=tuple(ObjectSpec(**o) for o in data["objects"]),
            events=tuple(Event(**e) for e in data.get("events", ())),
        )


def sample_scene(
    rng: np.random.Generator, max_objects: int = 2, event_probability: float = 0.3, num_frames: int = 165
) -> Scene:
    """A random scene. Objects start away from the wall they move toward, so the first chunk
    shows the captioned direction before any bounce."""
    background = str(rng.choice(list(BACKGROUNDS)))
    count = int(rng.integers(1, max_objects + 1))
    colors = rng.choice(list(COLORS), size=count, replace=False)
    objects = []
    for i in range(count):
        direction = str(rng.choice(list(DIRECTIONS)))
        dx, dy = DIRECTIONS[direction]
        x = (
            float(rng.uniform(0.2, 0.4))
            if dx > 0
            else float(rng.uniform(0.6, 0.8))
            if dx < 0
            else float(rng.uniform(0.2, 0.8))
        )
        y = (
            float(rng.uniform(0.3, 0.45))
            if dy > 0
            else float(rng.uniform(0.55, 0.7))
            if dy < 0
            else float(rng.uniform(0.3, 0.7))
        )
        if count == 2 and dx == 0:  # keep two vertical movers apart
            x = 0.3 if i == 0 else 0.7
        objects.append(
            ObjectSpec(
                shape=str(rng.choice(SHAPES)),
                color=str(colors[i]),
                size=str(rng.choice(list(SIZES))),
                direction=direction,
                speed=str(rng.choice(list(SPEEDS))),
                x=x,
                y=y,
            )
        )
    events = []
    if rng.random() < event_probability and num_frames > 66:
        target = int(rng.integers(count))
        frame = int(rng.integers(1, num_frames // CHUNK_FRAMES)) * CHUNK_FRAMES  # events start at chunk boundaries
        if rng.random() < 0.5:
            used = {o.color for o in objects}
            value = str(rng.choice([c for c in COLORS if c not in used]))
            events.append(Event(frame, target, "color", value))
        else:
            value = str(rng.choice([d for d in DIRECTIONS if d != objects[target].direction]))
            events.append(Event(frame, target, "direction", value))
    return Scene(background, tuple(objects), tuple(events))


def start_anchor(slot: int, count: int) -> tuple[float, float]:
    """Where a start curriculum begins object ``slot`` of ``count``: the frame's centre for one object, for two
    the centres of the upper-left and lower-right quarters, so they never start on one spot. The same for
    every direction, speed, colour, shape and size: an anchor that told the direction (as ``sample_scene``'s
    start on the side away from where an object goes does) would let a model read the path from where the
    object is instead of from the word, and the word would stay unread (benchmarks/README.md, eighteenth session)."""
    if count == 1:
        return 0.5, 0.5
    return (0.35, 0.35) if slot == 0 else (0.65, 0.65)


def with_start_spread(scene: Scene, spread: float) -> Scene:
    """``scene`` with each object's start pulled toward its ``start_anchor``: ``spread`` 0 puts it there, 1
    leaves the scene as drawn. A start curriculum (the recipe's ``--start-curriculum``) orders a corpus by
    spread: a model first learns each direction word as one path from one place (where the word alone tells
    the path at every noise level), then from ever more places — from the drawn starts alone the Mid did not
    come to read the word in 2,000 steps (benchmarks/README.md, sixteenth and seventeenth sessions)."""
    if not 0.0 <= spread <= 1.0:
        raise ValueError(f"a start spread lies in [0, 1], got {spread}")
    if spread == 1.0:
        return scene  # exactly as drawn (the interpolation would round)
    count = len(scene.objects)
    objects = []
    for slot, obj in enumerate(scene.objects):
        ax, ay = start_anchor(slot, count)
        objects.append(replace(obj, x=ax + spread * (obj.x - ax), y=ay + spread * (obj.y - ay)))
    return replace(scene, objects=tuple(objects))


def _shape_alpha(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a shape centred at the origin; dx, dy in pixels."""
    if shape == "circle":
        distance = np.sqrt(dx**2 + dy**2) - radius
    elif shape == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - radius * 0.85
    elif shape == "triangle":
        # Upward triangle: inside three half-planes.
        r = radius * 1.15
        edge = math.sqrt(3) / 2
        d1 = dy - r / 2
        d2 = edge * dx - 0.5 * dy - r / 2
        d3 = -edge * dx - 0.5 * dy - r / 2
        distance = np.maximum(np.maximum(d1, d2), d3)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def trajectory(
    obj: ObjectSpec, events: list[Event], target: int, num_frames: int, height: int, width: int
) -> np.ndarray:
    """Centre positions (num_frames, 2) in pixels, bouncing off the walls."""
    radius = SIZES[obj.size] * height
    x, y = obj.x * width, obj.y * height
    direction = np.array(DIRECTIONS[obj.direction], dtype=np.float64)
    speed = SPEEDS[obj.speed] * width
    changes = {e.frame: e.value for e in events if e.target == target and e.kind == "direction"}
    positions = np.zeros((num_frames, 2))
    for t in range(num_frames):
        if t in changes:
            direction = np.array(DIRECTIONS[changes[t]], dtype=np.float64)
        positions[t] = (x, y)
        x, y = x + direction[0] * speed, y + direction[1] * speed
        if not radius <= x <= width - radius:
            direction[0] = -direction[0]
            x = min(max(x, radius), width - radius)
        if not radius <= y <= height - radius:
            direction[1] = -direction[1]
            y = min(max(y, radius), height - radius)
    return positions


def _dominant_direction(path: np.ndarray) -> str:
    """The world direction most of the steps of a centre track (N, 2) go in."""
    steps = np.diff(path, axis=0)
    votes = {name: 0 for name in DIRECTIONS}
    for dx, dy in steps:
        for name, (ux, uy) in DIRECTIONS.items():
            votes[name] += (dx * ux + dy * uy) > 0
    return max(votes, key=votes.get)


def render(scene: Scene, num_frames: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The scene as uint8 frames (num_frames, height, width, 3)."""
    frames = np.empty((num_frames, height, width, 3), dtype=np.float32)
    frames[:] = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    events = list(scene.events)
    for index, obj in enumerate(scene.objects):
        path = trajectory(obj, events, index, num_frames, height, width)
        radius = SIZES[obj.size] * height
        color_changes = sorted((e.frame, e.value) for e in events if e.target == index and e.kind == "color")
        for t in range(num_frames):
            color = obj.color
            for frame, value in color_changes:
                if frame <= t:
                    color = value
            cx, cy = path[t]
            alpha = _shape_alpha(obj.shape, xs - cx, ys - cy, radius)[..., None]
            frames[t] = frames[t] * (1 - alpha) + np.array(COLORS[color], dtype=np.float32) * alpha
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def vocabulary() -> list[str]:
    """Every word a caption can contain."""
    words = {"a", "moves", "on", "background", "and"}
    words |= set(SHAPES) | set(COLORS) | set(BACKGROUNDS) | set(DIRECTIONS) | set(SPEEDS) | set(SIZES)
    return sorted(words)


def export_dataset(
    out_dir: str | Path, count: int, num_frames: int = 165, seed: int = 0, height: int = HEIGHT, width: int = WIDTH
) -> Path:
    """Write ``count`` captioned videos as MP4 plus ``manifest.json`` (fields ``path``, ``cap``,
    ``num_frames``, ``fps``, ``height``, ``width``, and the scene with its caption timeline)."""
    from ..media import write_mp4

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        scene = sample_scene(rng, num_frames=num_frames)
        relative = f"videos/{i:06d}.mp4"
        write_mp4(render(scene, num_frames, height, width), out / relative, FPS)
        entries.append(
            {
                "path": relative,
                "cap": scene.caption(0),
                "num_frames": num_frames,
                "fps": FPS,
                "height": height,
                "width": width,
                "timeline": scene.timeline(),
                "scene": scene.to_dict(),
            }
        )
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(entries, indent=1))
    return manifest
