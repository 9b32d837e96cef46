"""HeliosBench end to end: the prompt file, generating the videos of each duration tier, and scoring a
folder of videos (official file names ``{id}_{target}_ori{actual}.mp4``).

The prompt file is the user's (the official 240-prompt CSV, columns ``id, prompt, duration``; nothing of
it is shipped here): durations ≤ 120 form the short set, judged on their first 81 frames; 240, 720 and
1,440 form the long set. ``world_prompts`` is the synthetic-world analogue that runs in CI: held-out
world scenes as prompts, the world's strict judge as the semantic metric, the motion metrics at the
world's own width (192: its videos are not the paper's, and 640-wide flow would only cost time).

The weight-free metrics (``metrics.py``) always run; the model-based ones (``model_metrics.py``: the
aesthetic CLIP head, a CLIP frame–text semantic fallback, the naturalness endpoint) run when the user
gives their weights or endpoint; motion smoothness is by RAFT flow interpolation with the user's
torchvision RAFT weights (``flow_interpolation.py``), else a weight-free linear fallback; the semantic
metric is the official ViCLIP from the user's checkpoint folder (``viclip.py``). Totals over what is
present are marked partial.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...media import read_video, write_mp4
from . import metrics
from .scoring import rating, throughput_score, weighted_total

TIERS = (81, 240, 720, 1440)
SHORT_FRAMES = 81
NAME = re.compile(r"(?P<id>[A-Za-z0-9-]+)_(?P<target>\d+)_ori(?P<actual>\d+)\.mp4")


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    prompt: str
    frames: int  # the tier: 81 for the short set, else the prompt's duration

    @property
    def long(self) -> bool:
        return self.frames > SHORT_FRAMES


def read_prompt_csv(path: str | Path) -> list[BenchPrompt]:
    """The official prompt CSV (``id, prompt, duration``), checked row by row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file not found: {path}")
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if not rows:
        raise ValueError(f"{path}: no prompts")
    missing = {"id", "prompt", "duration"} - set(rows[0])
    if missing:
        raise ValueError(f"{path}: needs the columns id, prompt, duration (missing {', '.join(sorted(missing))})")
    prompts = []
    for n, row in enumerate(rows, start=2):
        ident, text = (row.get("id") or "").strip(), (row.get("prompt") or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9-]+", ident) or not text:
            raise ValueError(f"{path}: line {n} needs an id (letters, digits, '-') and a prompt")
        try:
            duration = int(row["duration"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}: line {n} has a non-integer duration {row['duration']!r}") from None
        if duration < 1:
            raise ValueError(f"{path}: line {n} has a duration below 1")
        prompts.append(BenchPrompt(ident, text, SHORT_FRAMES if duration <= 120 else duration))
    return prompts


def world_prompts(count: int, tiers: tuple[int, ...] = (SHORT_FRAMES,)) -> tuple[list[BenchPrompt], dict]:
    """The synthetic-world analogue: held-out scenes as prompts (each tier in turn), and their scenes
    by prompt id for the judge."""
    from ...synthetic.evaluate import held_out_scenes

    scenes = held_out_scenes(count)
    prompts = [BenchPrompt(f"w{i + 1}", s.caption(), tiers[i % len(tiers)]) for i, s in enumerate(scenes)]
    return prompts, {p.id: scene for p, scene in zip(prompts, scenes)}


def video_name(prompt: BenchPrompt, actual: int) -> str:
    return f"{prompt.id}_{prompt.frames}_ori{actual}.mp4"


def generate_videos(pipeline, prompts: list[BenchPrompt], out: str | Path, tiers=TIERS, seed: int = 0, **options):
    """Generate every prompt of the chosen tiers into ``out`` (videos already there are kept: resumable).
    Returns the throughput: frames, seconds and FPS of what was generated now."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames_made, seconds = 0, 0.0
    for prompt in prompts:
        if prompt.frames not in tiers or any(out.glob(f"{prompt.id}_{prompt.frames}_ori*.mp4")):
            continue
        started = time.perf_counter()
        video = pipeline.generate(prompt.prompt, num_frames=prompt.frames, seed=seed, **options)
        seconds += time.perf_counter() - started
        frames = video.frames[: prompt.frames]  # (whole chunks were generated: the tier's length is kept)
        frames_made += len(frames)
        write_mp4(frames, out / video_name(prompt, len(frames)), video.fps)
    fps = frames_made / seconds if seconds else None
    return {"frames": frames_made, "seconds": round(seconds, 2), "fps": None if fps is None else round(fps, 3)}


Smoothness = Callable[[np.ndarray], float]


def score_video(
    frames: np.ndarray, long: bool, width: int | None = metrics.WIDTH, smoothness: Smoothness | None = None
) -> dict[str, float]:
    """The motion metrics of one video (uint8 (T, H, W, 3) at any size), read at ``width`` wide (the
    official 640; None: as it is). ``smoothness``: the motion-smoothness metric (``raft_smoothness``);
    default the weight-free linear fallback."""
    smoothness = smoothness or metrics.motion_smoothness_linear
    wide = metrics.at_benchmark_width(frames, width) if width else frames
    scores = {"motion_amplitude": metrics.motion_amplitude(wide), "motion_smoothness": smoothness(wide)}
    if long:
        scores["drift_smoothness"] = metrics.drifting(smoothness, wide)
    return scores


def raft_smoothness(weights: str | Path, device: str = "cpu") -> Smoothness:
    """Motion smoothness by RAFT flow interpolation (flow_interpolation.py), the model loaded once."""
    from .flow_interpolation import load_raft, motion_smoothness_flow

    flow = load_raft(weights, device)

    def smoothness(frames: np.ndarray) -> float:
        return motion_smoothness_flow(frames, flow, device)

    smoothness.method = "RAFT flow interpolation"
    return smoothness


def score_folder(
    folder: str | Path,
    prompts: list[BenchPrompt] | None = None,
    scorers: dict[str, Callable[[np.ndarray, BenchPrompt], float]] | None = None,
    official_typo: bool = False,
    width: int | None = metrics.WIDTH,
    smoothness: Smoothness | None = None,
) -> dict:
    """Every ``{id}_{target}_ori{actual}.mp4`` of ``folder`` scored, averaged per set (short, long),
    rated and totalled. ``scorers``: more metrics by name, ``scorer(frames, prompt)`` (``model_scorers``:
    aesthetic, semantic (ViCLIP), semantic_clip, naturalness; ``world_judge``: semantic_world); on long videos each also
    gives its drifting variant (first vs last 15 %)."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.mp4") if NAME.fullmatch(p.name))
    if not files:
        raise ValueError(f"{folder}: no videos named {{id}}_{{target}}_ori{{actual}}.mp4")
    by_id = {p.id: p for p in prompts or []}
    videos = []
    for path in files:
        match = NAME.fullmatch(path.name)
        ident, target = match["id"], int(match["target"])
        prompt = by_id.get(ident, BenchPrompt(ident, "", target))
        frames = read_video(path)[0]
        if not prompt.long:
            frames = frames[:SHORT_FRAMES]
        scores = score_video(frames, prompt.long, width, smoothness)
        for name, scorer in (scorers or {}).items():
            if not prompt.prompt:
                raise ValueError(f"{path.name}: no prompt with id {ident} for the metric {name}")
            scores[name] = scorer(frames, prompt)
            if prompt.long:
                count = max(4, round(len(frames) * metrics.DRIFT_PART))
                scores[f"drift_{name}"] = abs(scorer(frames[:count], prompt) - scorer(frames[-count:], prompt))
        videos.append({"video": path.name, "id": ident, "frames": len(frames), "long": prompt.long, **scores})
    method = getattr(smoothness, "method", "linear: the weight-free fallback, not comparable with the paper's")
    result = {"videos": videos, "sets": {}, "width": width or "native", "smoothness": method}
    for name, long in (("short", False), ("long", True)):
        members = [v for v in videos if v["long"] == long]
        if not members:
            continue
        keys = [k for k in members[0] if k not in ("video", "id", "frames", "long")]
        means = {k: float(np.mean([v[k] for v in members])) for k in keys}
        ratings = {k: rating(k, v, long, official_typo) for k, v in means.items()}
        result["sets"][name] = {
            "videos": len(members),
            "scores": {k: round(v, 4) for k, v in means.items()},
            "ratings": ratings,
            **weighted_total(ratings, long),
        }
    return result


def world_judge(scenes: dict) -> Callable[[np.ndarray, BenchPrompt], float]:
    """The world analogue's semantic metric: the strict judge's share of right (object, attribute)
    pairs (present, colour, shape, size, direction, speed) of the prompted scene."""
    from ...synthetic.judge import judge_clip

    def semantic(frames: np.ndarray, prompt: BenchPrompt) -> float:
        results = judge_clip(frames, scenes[prompt.id])
        return float(np.mean([value for result in results for value in result.values()]))

    return semantic


def world_control(folder: str | Path, prompts: list[BenchPrompt], scenes: dict) -> dict | None:
    """The world analogue's control for its semantic metric: every video's first 81 frames judged
    against its own scene and against the next scene's (ids in order, the last against the first), which
    must score lower. None with fewer than two scenes."""
    if len(prompts) < 2:
        return None
    judge = world_judge(scenes)
    ids = [p.id for p in prompts]
    own, other = [], []
    for path in sorted(Path(folder).glob("*.mp4")):
        match = NAME.fullmatch(path.name)
        if match is None or match["id"] not in ids:
            continue
        frames = read_video(path)[0][:SHORT_FRAMES]
        index = ids.index(match["id"])
        own.append(judge(frames, prompts[index]))
        other.append(judge(frames, prompts[(index + 1) % len(prompts)]))
    if not own:
        return None
    return {"videos": len(own), "own_prompt": float(np.mean(own)), "next_scene_prompt": float(np.mean(other))}


def model_scorers(
    clip: str | Path | None = None,
    aesthetic_head: str | Path | None = None,
    naturalness_url: str | None = None,
    naturalness_model: str | None = None,
    device: str = "cpu",
    viclip: str | Path | None = None,
) -> dict[str, Callable[[np.ndarray, BenchPrompt], float]]:
    """The model-based metrics the user gave weights or an endpoint for (model_metrics.py, viclip.py)."""
    from .model_metrics import ClipMetrics, NaturalnessEndpoint
    from .viclip import ViClipSemantic

    scorers = {}
    if viclip is not None:  # the official semantic metric
        semantic = ViClipSemantic(viclip, device)
        scorers["semantic"] = lambda frames, prompt: semantic(frames, prompt.prompt)
    if aesthetic_head is not None and clip is None:
        raise ValueError("the aesthetic head needs the CLIP model it reads (--clip)")
    if clip is not None:
        model = ClipMetrics(clip, aesthetic_head, device)
        if aesthetic_head is not None:
            scorers["aesthetic"] = lambda frames, prompt: model.aesthetic(frames)
        scorers["semantic_clip"] = lambda frames, prompt: model.semantic(frames, prompt.prompt)
    if naturalness_url is not None:
        if not naturalness_model:
            raise ValueError("the naturalness endpoint needs a model name (--naturalness-model)")
        judge = NaturalnessEndpoint(naturalness_url, naturalness_model)
        scorers["naturalness"] = lambda frames, prompt: judge(frames)
    return scorers


def report_table(result: dict) -> str:
    lines = ["| set | videos | metric | raw | rating |", "|---|---|---|---|---|"]
    for name, entry in result["sets"].items():
        for metric, raw in entry["scores"].items():
            lines.append(f"| {name} | {entry['videos']} | {metric} | {raw:.4f} | {entry['ratings'][metric]} |")
        label = "total" if entry["complete"] else f"partial total (missing: {', '.join(entry['missing'])})"
        lines.append(f"| {name} | {entry['videos']} | **{label}** | | {entry['total']:.3f} |")
    if result.get("throughput"):
        t = result["throughput"]
        lines.append(f"| – | – | throughput ({t['fps']} FPS) | | {t['score']} |")
    return "\n".join(lines)


def write_result(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(result, indent=1))
    return path


def with_throughput(result: dict, generation: dict) -> dict:
    if generation.get("fps"):
        result["throughput"] = {**generation, "score": throughput_score(generation["fps"])}
    return result
