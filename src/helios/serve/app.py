"""The streaming server: a WebSocket session protocol, an HTTP job API and the web page.

Protocol: ``docs/streaming.md``. Every problem reaches the client as ``{"type": "error", ...}``; the
socket is closed by the server only after a ``busy`` refusal or an authentication failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import tempfile
import threading
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from ..generation import HeliosPipeline, PromptChange
from ..media import write_mp4
from .session import Session, SessionOptions

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    max_sessions: int = 1
    queue_size: int = 4
    slow_client: str = "wait"  # "wait" (backpressure) | "drop"
    max_message_bytes: int = 8 * 2**20  # an I2V image or a short V2V clip fits; more is refused
    max_frames: int = 24 * 60 * 10  # per request; None in a start message means "until stopped"
    token: str | None = None  # required (query ?token= or "Authorization: Bearer") when set
    max_jobs: int = 32  # finished HTTP jobs kept for download


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _decode_media(data: str, still: bool) -> np.ndarray:
    from ..media import read_image, read_video

    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        raise ProtocolError("bad_input", "image/video must be base64-encoded file bytes") from None
    suffix = ".png" if still else ".mp4"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(raw)
        handle.flush()
        try:
            return read_image(handle.name) if still else read_video(handle.name)[0]
        except ValueError as exc:
            raise ProtocolError("bad_input", str(exc).replace(handle.name, "the uploaded file")) from None


def parse_start(message: dict, settings: ServeSettings) -> SessionOptions:
    frames = message.get("frames", 33 * 4)
    if frames is not None and (not isinstance(frames, int) or not 1 <= frames <= settings.max_frames):
        raise ProtocolError("bad_input", f"frames must be an integer from 1 to {settings.max_frames}, or null for until stopped")
    prompt = message.get("prompt")
    prompts = message.get("prompts")
    if (prompt is None) == (prompts is None):
        raise ProtocolError("bad_input", "give exactly one of prompt or prompts")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ProtocolError("bad_input", "prompt must be a non-empty string")
    schedule = None
    if prompts is not None:
        try:
            schedule = [PromptChange(int(p.get("chunk", int(p.get("frame", 0)) // 33)), str(p["prompt"]),
                                     int(p.get("transition", 1))) for p in prompts]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProtocolError("bad_input", "prompts must be a list of {prompt, chunk|frame, transition?}") from None
    steps = message.get("steps")
    return SessionOptions(
        prompt=prompt, prompts=schedule, frames=frames, seed=int(message.get("seed", 0)),
        preset=message.get("preset"), steps=steps, guidance_scale=message.get("guidance_scale"),
        image=_decode_media(message["image"], still=True) if message.get("image") else None,
        video=_decode_media(message["video"], still=False) if message.get("video") else None,
    )


class JobRequest(BaseModel):
    prompt: str = Field(min_length=1)
    frames: int = Field(default=33 * 4, ge=1)
    seed: int = 0
    preset: str | None = None
    steps: int | list[int] | None = None
    guidance_scale: float | None = None


def create_app(pipeline: HeliosPipeline, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    sessions: dict[str, Session] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        for session in list(sessions.values()):  # shutdown: end every live generation after its chunk
            session.stop()

    app = FastAPI(title="helios", description="Real-time long video generation", lifespan=lifespan)
    slots = threading.BoundedSemaphore(settings.max_sessions)
    jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
    job_lock = threading.Lock()
    generation_lock = threading.Lock()  # HTTP jobs run one at a time, beside live sessions' slots

    def authorised(headers, query) -> bool:
        if settings.token is None:
            return True
        given = query.get("token") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        return secrets.compare_digest(given or "", settings.token)

    app.state.sessions = sessions
    app.state.settings = settings

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/v1/info")
    def info() -> dict:
        return {"fps": pipeline.fps, "height": pipeline.height, "width": pipeline.width, "chunk_frames": 33,
                "sampler": pipeline.sampler.name, "max_sessions": settings.max_sessions, "active_sessions": len(sessions)}

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        await socket.accept()
        if not authorised(socket.headers, socket.query_params):
            await socket.send_json({"type": "error", "code": "unauthorized", "message": "missing or wrong token"})
            await socket.close(code=4401)
            return
        if not slots.acquire(blocking=False):
            await socket.send_json({"type": "error", "code": "busy",
                                    "message": f"all {settings.max_sessions} session slots are in use; try again later"})
            await socket.close(code=4429)
            return
        live: dict[str, Any] = {"session": None, "forward": None}
        try:
            await _serve_session(socket, live)
        except WebSocketDisconnect:
            pass
        finally:
            session = live["session"]
            if live["forward"] is not None:
                live["forward"].cancel()
            if session is not None:
                session.stop()
                # The slot is free only once the worker has finished its chunk in progress.
                await asyncio.get_running_loop().run_in_executor(None, session.join, 60)
                sessions.pop(session.id, None)
                app.state.finished_sessions.remember(session)
            slots.release()

    async def _serve_session(socket: WebSocket, live: dict[str, Any]) -> None:
        """Read client messages until the client disconnects; ``live`` tells the caller what to free."""
        loop = asyncio.get_running_loop()
        session: Session | None = None
        forward: asyncio.Task | None = None

        async def forward_chunks(active: Session) -> None:
            while True:
                message = await loop.run_in_executor(None, active.chunks.get)
                if message is None:
                    break
                await socket.send_json(message)
            if active.error:
                await socket.send_json({"type": "error", "code": "generation_failed", "message": active.error})
            await socket.send_json({"type": "done", "frames": active.recorded_frames, "dropped": active.dropped,
                                    "session": active.id})

        while True:
            text = await socket.receive_text()
            try:
                if len(text.encode()) > settings.max_message_bytes:
                    raise ProtocolError("too_large", f"message of {len(text.encode())} bytes exceeds {settings.max_message_bytes}")
                try:
                    message = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ProtocolError("bad_message", f"not valid JSON: {exc.msg}") from None
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ProtocolError("bad_message", "a message is a JSON object with a string 'type'")
                kind = message["type"]
                if kind == "start":
                    if session is not None and not session.finished.is_set():
                        raise ProtocolError("bad_state", "a generation is already running in this session; stop it first")
                    options = await loop.run_in_executor(None, parse_start, message, settings)
                    session = Session(pipeline, options, settings.queue_size, settings.slow_client)
                    try:
                        await loop.run_in_executor(None, session.start)
                    except ValueError as exc:
                        session = None
                        raise ProtocolError("bad_input", str(exc)) from None
                    sessions[session.id] = session
                    live["session"] = session
                    await socket.send_json({"type": "started", "session": session.id, "fps": pipeline.fps,
                                            "frames": options.frames, "height": pipeline.height, "width": pipeline.width})
                    forward = live["forward"] = asyncio.create_task(forward_chunks(session))
                elif kind in ("prompt", "pause", "resume", "stop"):
                    if session is None or session.finished.is_set():
                        raise ProtocolError("bad_state", f"'{kind}' needs a running generation; send 'start' first")
                    if kind == "prompt":
                        prompt, transition = message.get("prompt"), message.get("transition", 1)
                        if not isinstance(prompt, str) or not prompt.strip():
                            raise ProtocolError("bad_input", "prompt must be a non-empty string")
                        if not isinstance(transition, int) or transition < 1:
                            raise ProtocolError("bad_input", "transition is a number of chunks ≥ 1 (1 = hard cut)")
                        chunk = await loop.run_in_executor(None, session.update_prompt, prompt, transition)
                        await socket.send_json({"type": "prompt_scheduled", "chunk": chunk, "prompt": prompt,
                                                "transition": transition})
                    elif kind == "pause":
                        session.pause()
                        await socket.send_json({"type": "paused"})
                    elif kind == "resume":
                        session.resume()
                        await socket.send_json({"type": "resumed"})
                    else:
                        session.stop()
                        await socket.send_json({"type": "stopping"})
                else:
                    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected start, prompt, pause, resume or stop")
            except ProtocolError as exc:
                await socket.send_json({"type": "error", "code": exc.code, "message": str(exc)})
            if forward is not None and forward.done() and not forward.cancelled() and forward.exception() is not None:
                raise forward.exception()

    @app.get("/v1/sessions/{session_id}/video.mp4")
    def session_video(session_id: str, request: Request) -> Response:
        if not authorised(request.headers, request.query_params):
            raise HTTPException(401, "missing or wrong token")
        session = sessions.get(session_id) or app.state.finished_sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id}")
        return Response(_mp4_bytes(session.video(), pipeline.fps), media_type="video/mp4",
                        headers={"Content-Disposition": f'attachment; filename="helios-{session_id}.mp4"'})

    app.state.finished_sessions = _RecentSessions(sessions, limit=8)

    # ---------------------------------------------------------------- HTTP job API

    def _run_job(job_id: str, request: JobRequest) -> None:
        job = jobs[job_id]
        try:
            with generation_lock:
                job["status"] = "running"
                frames = []
                for chunk in pipeline.stream(request.prompt, num_frames=request.frames, seed=request.seed,
                                             preset=request.preset, steps=request.steps,
                                             guidance_scale=request.guidance_scale):
                    frames.append(chunk.frames)
                    job["chunks_done"] = chunk.index + 1
            job["video"] = _mp4_bytes(np.concatenate(frames), pipeline.fps)
            job["frames"] = sum(len(f) for f in frames)
            job["status"] = "done"
        except Exception as exc:
            job["status"] = "failed"
            job["error"] = f"{type(exc).__name__}: {exc}"

    @app.post("/v1/videos", status_code=202)
    def create_job(request: JobRequest, http: Request) -> dict:
        if not authorised(http.headers, http.query_params):
            raise HTTPException(401, "missing or wrong token")
        if request.frames > settings.max_frames:
            raise HTTPException(422, f"frames must be at most {settings.max_frames}")
        job_id = uuid.uuid4().hex[:12]
        with job_lock:
            while len(jobs) >= settings.max_jobs:
                oldest = next((k for k, j in jobs.items() if j["status"] in ("done", "failed")), None)
                if oldest is None:
                    raise HTTPException(429, "too many jobs in progress")
                jobs.pop(oldest)
            jobs[job_id] = {"id": job_id, "status": "queued", "chunks_done": 0,
                            "chunks_total": -(-request.frames // 33), "prompt": request.prompt}
        threading.Thread(target=_run_job, args=(job_id, request), daemon=True).start()
        return {"id": job_id, "status": "queued"}

    @app.get("/v1/videos/{job_id}")
    def job_status(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return {k: v for k, v in job.items() if k != "video"}

    @app.get("/v1/videos/{job_id}/content")
    def job_content(job_id: str) -> Response:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if job["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['status']}")
        return Response(job["video"], media_type="video/mp4")

    return app


class _RecentSessions:
    """Sessions that ended stay downloadable for a while (the last ``limit`` of them)."""

    def __init__(self, live: dict[str, Session], limit: int):
        self.live = live
        self.limit = limit
        self.ended: OrderedDict[str, Session] = OrderedDict()

    def remember(self, session: Session) -> None:
        self.ended[session.id] = session
        while len(self.ended) > self.limit:
            self.ended.popitem(last=False)

    def get(self, session_id: str) -> Session | None:
        return self.ended.get(session_id)


def _mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = write_mp4(frames, Path(folder) / "video.mp4", fps)
        return path.read_bytes()


def run(pipeline: HeliosPipeline, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(pipeline, settings), host=host, port=port, log_level="info")


