"""The streaming server: routes for the web page, the WebSocket protocol (``protocol.py``), the HTTP
job API (``jobs.py``) and session downloads. Protocol: ``docs/streaming.md``.

With a token every route except the page itself needs ``Authorization: Bearer <token>`` (the page
holds no secret; the interactive API docs are off), and the token is never accepted in a URL.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, Response

from ..generation import HeliosPipeline
from .jobs import QueueFull, mp4_bytes
from .protocol import StreamConnection
from .schema import ProtocolError, request_from_message
from .state import ServerState, ServeSettings

STATIC = Path(__file__).parent / "static"


async def _json_body(request: Request, limit: int) -> dict:
    """The request's JSON object, read no further than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the body must be at most {limit} bytes")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise HTTPException(413, f"the body must be at most {limit} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(422, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "the body must be a JSON object")
    return data


def create_app(pipeline: HeliosPipeline, settings: ServeSettings | None = None) -> FastAPI:
    state = ServerState(pipeline, settings or ServeSettings())
    protected = state.settings.token is not None

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        for session in list(state.sessions.values()):  # shutdown: end every live generation
            session.stop()

    docs = {} if not protected else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="helios", description="Real-time long video generation", lifespan=lifespan, **docs)
    app.state.sessions = state.sessions
    app.state.settings = state.settings
    app.state.server = state

    def require_token(request: Request) -> None:
        if not state.authorised(request.headers):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(require_token)]

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/v1/info", dependencies=guarded)
    def info() -> dict:
        return {
            "fps": pipeline.fps,
            "height": pipeline.height,
            "width": pipeline.width,
            "chunk_frames": pipeline.chunk_frames,
            "sampler": pipeline.sampler.name,
            "max_sessions": state.settings.max_sessions,
            "active_sessions": len(state.sessions),
            "token_required": protected,
        }

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        await StreamConnection(socket, state).serve()

    @app.get("/v1/sessions/{session_id}/video.mp4", dependencies=guarded)
    def session_video(session_id: str) -> Response:
        session = state.sessions.get(session_id) or state.finished_sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id[:40]}")
        try:
            frames = session.video()
        except LookupError:
            raise HTTPException(409, f"session {session_id} has no frames yet") from None
        return Response(
            mp4_bytes(frames, pipeline.fps),
            media_type="video/mp4",
            headers={"Content-Disposition": f'attachment; filename="helios-{session_id}.mp4"'},
        )

    @app.post("/v1/videos", status_code=202, dependencies=guarded)
    async def create_job(request: Request) -> dict:
        body = await _json_body(request, state.settings.max_message_bytes)
        if body.get("type", "start") != "start":
            raise HTTPException(422, "a job body is a start message: no other type")
        body.pop("type", None)
        try:
            generation = request_from_message(body, pipeline, state.settings.limits, until_stopped=False)
            job_id = state.jobs.submit(generation)
        except ProtocolError as exc:
            raise HTTPException(422, str(exc)) from None
        except QueueFull as exc:
            raise HTTPException(429, str(exc)) from None
        return {"id": job_id, "status": "queued"}

    def _job(job_id: str) -> dict:
        status = state.jobs.status(job_id)
        if status is None:
            raise HTTPException(404, f"no job {job_id[:40]}")
        return status

    @app.get("/v1/videos/{job_id}", dependencies=guarded)
    def job_status(job_id: str) -> dict:
        return _job(job_id)

    @app.delete("/v1/videos/{job_id}", dependencies=guarded)
    def cancel_job(job_id: str) -> dict:
        _job(job_id)
        return state.jobs.cancel(job_id)

    @app.get("/v1/videos/{job_id}/content", dependencies=guarded)
    def job_content(job_id: str) -> Response:
        status = _job(job_id)
        if status["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {status['status']}")
        return Response(state.jobs.video(job_id), media_type="video/mp4")

    return app


def run(
    pipeline: HeliosPipeline, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None
) -> None:
    import uvicorn

    uvicorn.run(create_app(pipeline, settings), host=host, port=port, log_level="info")
