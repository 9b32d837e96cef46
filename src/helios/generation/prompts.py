"""Prompt schedules and live prompt changes with embedding interpolation (paper §3.5, §6).

A schedule is a list of (start chunk, prompt). When a prompt starts at chunk s with a transition of
M chunks, chunks s … s+M−1 use lerp(E, new, w) with w = 1/M, 2/M, …, 1, where E is the embedding chunk
s−1 used — the first chunk after a change already moves (the official code starts at w = 0, wasting a
chunk), and chunks past the end of the schedule keep the last prompt (the official code falls back to
the first one). ``transition=1`` is a hard cut.

A change that arrives before the previous transition has ended blends on from the embedding in use
(itself a blend), never from the previous target: the embedding never jumps, however close the changes.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import read_json


@dataclass(frozen=True)
class PromptChange:
    start_chunk: int
    prompt: str
    transition: int = 1  # chunks over which the embedding moves from the previous prompt


class PromptSchedule:
    """Which text embedding each chunk uses. Thread-safe: a live stream may add changes while it runs."""

    def __init__(self, changes: list[PromptChange], encode):
        if not changes:
            raise ValueError("a prompt schedule needs at least one prompt")
        if changes[0].start_chunk != 0:
            raise ValueError("the first prompt of a schedule must start at chunk 0 (frame 0)")
        self._encode = encode
        self._embeddings: dict[str, torch.Tensor] = {}
        self._changes: list[PromptChange] = []
        self._lock = threading.Lock()
        for change in changes:
            self.add(change)

    @property
    def changes(self) -> list[PromptChange]:
        with self._lock:
            return list(self._changes)

    def add(self, change: PromptChange) -> None:
        if change.transition < 1:
            raise ValueError(f"transition must be at least 1 chunk, got {change.transition}")
        if not change.prompt.strip():
            raise ValueError("prompt is empty")
        self._embedding(change.prompt)  # encode now, so a failing prompt fails here and not mid-stream
        with self._lock:
            if self._changes and change.start_chunk < self._changes[-1].start_chunk:
                raise ValueError("prompt changes must be added in chunk order")
            # A later change at the same chunk replaces the earlier one.
            self._changes = [c for c in self._changes if c.start_chunk != change.start_chunk] + [change]

    def _embedding(self, prompt: str) -> torch.Tensor:
        if prompt not in self._embeddings:
            self._embeddings[prompt] = self._encode([prompt])
        return self._embeddings[prompt]

    def weights_for_chunk(self, chunk: int) -> tuple[str, str, float]:
        """(previous prompt, current prompt, progress of the transition into the current one) for
        ``chunk``: what a chunk reports. Its embedding is ``embedding_for_chunk``'s."""
        changes = self.changes
        index = self._active(changes, chunk)
        current = changes[index]
        if index == 0:
            return current.prompt, current.prompt, 1.0
        return changes[index - 1].prompt, current.prompt, self._progress(current, chunk)

    def mixture_for_chunk(self, chunk: int) -> dict[str, float]:
        """The embedding of ``chunk`` as weights of prompt embeddings (they sum to 1)."""
        changes = self.changes
        return self._mixture(changes, self._active(changes, chunk), chunk)

    def embedding_for_chunk(self, chunk: int) -> torch.Tensor:
        mixture = self.mixture_for_chunk(chunk)
        return sum(self._embedding(prompt) * weight for prompt, weight in mixture.items())

    @staticmethod
    def _active(changes: list[PromptChange], chunk: int) -> int:
        return max(i for i, c in enumerate(changes) if c.start_chunk <= chunk)

    @staticmethod
    def _progress(change: PromptChange, chunk: int) -> float:
        return min(1.0, (chunk - change.start_chunk + 1) / change.transition)

    def _mixture(self, changes: list[PromptChange], index: int, chunk: int) -> dict[str, float]:
        """Change ``index`` active at ``chunk``: lerp from the mixture in use the chunk before it started
        (decided by the earlier changes alone) toward its prompt."""
        change = changes[index]
        weight = 1.0 if index == 0 else self._progress(change, chunk)
        if weight >= 1.0:
            return {change.prompt: 1.0}
        start = self._mixture(changes, index - 1, change.start_chunk - 1)
        mixture = {prompt: w * (1.0 - weight) for prompt, w in start.items()}
        mixture[change.prompt] = mixture.get(change.prompt, 0.0) + weight
        return mixture


def read_prompt_file(path: str | Path, chunk_frames: int, default_transition: int = 3) -> list[PromptChange]:
    """A schedule file: JSON list of {"prompt", "frame" or "chunk", "transition"?}, or CSV with
    columns prompt and frame|chunk (transition optional), or plain text with one prompt per line
    (each starting one chunk after the previous). A frame starts the chunk that holds it
    (``chunk_frames`` frames per chunk: ``pipeline.chunk_frames``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of prompt entries")
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        rows = [{"prompt": line, "chunk": i} for i, line in enumerate(lines)]
    if not rows:
        raise ValueError(f"{path}: no prompts")
    changes = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not str(row.get("prompt") or "").strip():
            raise ValueError(f"{path}: entry {n} has no prompt")
        try:
            if row.get("chunk") not in (None, ""):
                chunk = int(row["chunk"])
            elif row.get("frame") not in (None, ""):
                chunk = int(row["frame"]) // chunk_frames
            else:
                chunk = 0 if n == 1 else None
            transition = int(row.get("transition") or default_transition)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: entry {n} has a non-integer chunk, frame or transition") from None
        if chunk is None:
            raise ValueError(f"{path}: entry {n} needs a 'frame' or 'chunk' where it starts")
        if chunk < 0:
            raise ValueError(f"{path}: entry {n} starts before the video")
        if changes and chunk <= changes[-1].start_chunk:
            raise ValueError(
                f"{path}: entry {n} must start after entry {n - 1} (chunk {chunk} ≤ {changes[-1].start_chunk})"
            )
        changes.append(PromptChange(chunk, str(row["prompt"]).strip(), transition))
    if changes[0].start_chunk != 0:
        raise ValueError(f"{path}: the first prompt must start at frame 0")
    return changes
