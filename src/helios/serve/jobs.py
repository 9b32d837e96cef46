"""The HTTP job queue: generation requests run one at a time on a worker thread; finished videos are
kept as MP4 bytes for download (the ``max_jobs`` most recent jobs). A job can be cancelled while it
waits or runs (a running one stops within one sampling step)."""

from __future__ import annotations

import queue
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..generation import GenerationRequest, HeliosPipeline
from ..media import write_mp4

FINISHED = ("done", "failed", "cancelled")


class QueueFull(RuntimeError):
    """Too many jobs are waiting or running."""


def mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_mp4(frames, Path(folder) / "video.mp4", fps).read_bytes()


class JobQueue:
    def __init__(self, pipeline: HeliosPipeline, max_jobs: int, max_active: int):
        self.pipeline = pipeline
        self.max_jobs = max_jobs
        self.max_active = max_active
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(self, request: GenerationRequest) -> str:
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            active = sum(j["status"] not in FINISHED for j in self.jobs.values())
            if active >= self.max_active:
                raise QueueFull(f"{active} jobs are waiting or running; try again later")
            while len(self.jobs) >= self.max_jobs:  # forget the oldest finished job
                self.jobs.pop(next(k for k, j in self.jobs.items() if j["status"] in FINISHED))
            self.jobs[job_id] = {
                "id": job_id,
                "status": "queued",
                "chunks_done": 0,
                "chunks_total": self.pipeline.chunks_for(request.num_frames),
            }
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="helios-jobs", daemon=True)
                self._worker.start()
        self._pending.put((job_id, request))
        return job_id

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's public state (no prompt echoed back, no bytes)."""
        job = self.jobs.get(job_id)
        return None if job is None else {k: v for k, v in job.items() if not k.startswith("_")}

    def video(self, job_id: str) -> bytes | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.get("_video")

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job["status"] == "queued":
                job["status"] = "cancelled"
            elif job["status"] == "running":
                job["_cancel"] = True
                stream = job.get("_stream")
                if stream is not None:
                    stream.stop()
        return self.status(job_id)

    def _work(self) -> None:
        while True:
            job_id, request = self._pending.get()
            with self._lock:
                job = self.jobs.get(job_id)
                if job is None or job["status"] != "queued":
                    continue  # cancelled (or forgotten) while it waited
                job["status"] = "running"
            self._run(job, request)

    def _run(self, job: dict[str, Any], request: GenerationRequest) -> None:
        try:
            stream = self.pipeline.run(request)
            with self._lock:
                job["_stream"] = stream
                if job.get("_cancel"):
                    stream.stop()
            frames = []
            for chunk in stream:
                frames.append(chunk.frames)
                job["chunks_done"] = chunk.index + 1
            if job.get("_cancel"):
                job["status"] = "cancelled"
                return
            job["_video"] = mp4_bytes(np.concatenate(frames), self.pipeline.fps)
            job["frames"] = sum(len(f) for f in frames)
            job["status"] = "done"
        except Exception as exc:  # reported in the job's status, never a crashed worker
            job["status"] = "failed"
            job["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            job.pop("_stream", None)
