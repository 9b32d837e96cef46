"""A live generation session: the pipeline's stream on a worker thread, feeding a bounded queue.

The worker produces chunks; the WebSocket side consumes them. When the client is slow the queue
fills and the configured policy applies: ``wait`` (backpressure — generation pauses until the
client catches up) or ``drop`` (the oldest undelivered chunk is discarded and counted). Pause holds
the worker before its next chunk (for at most ``pause_timeout`` seconds, then the session ends);
stop (or a disconnect) cancels it within one sampling step.

The consumer is woken through ``notify`` (the server passes a callback that sets an asyncio event on
its loop), so a waiting client holds no thread of the server's pool.
"""

from __future__ import annotations

import base64
import io
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..generation import GenerationRequest, HeliosPipeline

END = None  # the last message of a session's queue


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Session:
    pipeline: HeliosPipeline
    request: GenerationRequest
    queue_size: int = 4
    slow_client: str = "wait"  # "wait" | "drop"
    max_recorded_frames: int = 24 * 600  # frames kept for the MP4 download (10 minutes at 24 fps)
    pause_timeout: float = 600.0  # seconds a paused session waits before it ends
    notify: Callable[[], None] = lambda: None  # called after each message is queued (any thread)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self.chunks: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self.dropped = 0
        self.recorded: list[np.ndarray] = []
        self.recorded_frames = 0
        self._run_gate = threading.Event()
        self._run_gate.set()
        self._stopping = threading.Event()
        self.stream = None
        self.error: str | None = None
        self.started_at = time.perf_counter()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"helios-session-{self.id}", daemon=True)

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        # Validation and prompt encoding happen here, so bad input fails before the session runs.
        self.stream = self.pipeline.run(self.request)
        self._thread.start()

    def update_prompt(self, prompt: str, transition: int) -> int:
        return self.stream.update_prompt(prompt, transition)

    def pause(self) -> None:
        self._run_gate.clear()

    def resume(self) -> None:
        self._run_gate.set()

    @property
    def paused(self) -> bool:
        return not self._run_gate.is_set()

    def stop(self) -> None:
        """End the generation: the chunk in progress is cancelled at its next sampling step."""
        self._stopping.set()
        if self.stream is not None:
            self.stream.stop()
        self._run_gate.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker

    def _work(self) -> None:
        try:
            iterator = iter(self.stream)
            while not self._stopping.is_set():
                if not self._run_gate.wait(self.pause_timeout):
                    self.error = f"paused for more than {self.pause_timeout:g} s; the session ended"
                    break
                if self._stopping.is_set():
                    break
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                self._record(chunk.frames)
                self._deliver(
                    {
                        "type": "chunk",
                        "index": chunk.index,
                        "first_frame": chunk.first_frame,
                        "frames": [encode_jpeg(f) for f in chunk.frames],
                        "generation_seconds": chunk.generation_seconds,
                        "since_start_seconds": time.perf_counter() - self.started_at,
                        "prompt": chunk.prompt,
                        "prompt_weight": chunk.prompt_weight,
                        "dropped": self.dropped,
                    }
                )
        except Exception as exc:  # reported to the client as a message, never a dropped socket
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.stream is not None:
                self.stream.stop()
            self.finished.set()
            self._deliver(END)

    def _record(self, frames: np.ndarray) -> None:
        self.recorded.append(frames)
        self.recorded_frames += len(frames)
        while self.recorded_frames > self.max_recorded_frames and len(self.recorded) > 1:
            self.recorded_frames -= len(self.recorded.pop(0))

    def _deliver(self, message: dict | None) -> None:
        """Put a message on the bounded queue according to the slow-client policy (END always gets in)."""
        while True:
            try:
                self.chunks.put(message, timeout=0.1)
                break
            except queue.Full:
                if message is not END and self._stopping.is_set():
                    return  # stopped: no one needs more chunks
                if message is END or self.slow_client == "drop":
                    # The end marker always gets through; under "drop" a new chunk replaces the oldest.
                    try:
                        self.chunks.get_nowait()
                        self.dropped += message is not END
                    except queue.Empty:
                        pass
        self.notify()

    def video(self) -> np.ndarray:
        if not self.recorded:
            raise LookupError("nothing has been generated yet")
        return np.concatenate(self.recorded)
