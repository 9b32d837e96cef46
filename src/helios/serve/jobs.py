"""The HTTP job queue: generation requests run one at a time on a worker thread; finished videos
are kept as MP4 bytes for download (the ``max_jobs`` most recent jobs)."""

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


class QueueFull(RuntimeError):
    """Every kept job is still queued or running."""


def mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_mp4(frames, Path(folder) / "video.mp4", fps).read_bytes()


class JobQueue:
    def __init__(self, pipeline: HeliosPipeline, max_jobs: int):
        self.pipeline = pipeline
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(self, request: GenerationRequest) -> str:
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            while len(self.jobs) >= self.max_jobs:
                oldest = next((k for k, j in self.jobs.items() if j["status"] in ("done", "failed")), None)
                if oldest is None:
                    raise QueueFull("too many jobs in progress")
                self.jobs.pop(oldest)
            self.jobs[job_id] = {
                "id": job_id,
                "status": "queued",
                "chunks_done": 0,
                "chunks_total": self.pipeline.chunks_for(request.num_frames),
                "prompt": request.prompt,
            }
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="helios-jobs", daemon=True)
                self._worker.start()
        self._pending.put((job_id, request))
        return job_id

    def status(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return None if job is None else {k: v for k, v in job.items() if k != "video"}

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    def _work(self) -> None:
        while True:
            job_id, request = self._pending.get()
            job = self.jobs.get(job_id)
            if job is not None:
                self._run(job, request)

    def _run(self, job: dict[str, Any], request: GenerationRequest) -> None:
        try:
            job["status"] = "running"
            frames = []
            for chunk in self.pipeline.run(request):
                frames.append(chunk.frames)
                job["chunks_done"] = chunk.index + 1
            job["video"] = mp4_bytes(np.concatenate(frames), self.pipeline.fps)
            job["frames"] = sum(len(f) for f in frames)
            job["status"] = "done"
        except Exception as exc:  # reported in the job's status, never a crashed worker
            job["status"] = "failed"
            job["error"] = f"{type(exc).__name__}: {exc}"
