"""The streaming server: routes for the web page, the WebSocket protocol (``protocol.py``), the
HTTP job API (``jobs.py``) and session downloads. Protocol: ``docs/streaming.md``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, Response

from ..generation import HeliosPipeline
from .jobs import QueueFull, mp4_bytes
from .protocol import StreamConnection
from .schema import ProtocolError, request_from_message
from .state import ServerState, ServeSettings

STATIC = Path(__file__).parent / "static"


def create_app(pipeline: HeliosPipeline, settings: ServeSettings | None = None) -> FastAPI:
    state = ServerState(pipeline, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        for session in list(state.sessions.values()):  # shutdown: end every live generation after its chunk
            session.stop()

    app = FastAPI(title="helios", description="Real-time long video generation", lifespan=lifespan)
    app.state.sessions = state.sessions
    app.state.settings = state.settings
    app.state.server = state

    def require_token(request: Request) -> None:
        if not state.authorised(request.headers, request.query_params):
            raise HTTPException(401, "missing or wrong token")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/v1/info")
    def info() -> dict:
        return {
            "fps": pipeline.fps,
            "height": pipeline.height,
            "width": pipeline.width,
            "chunk_frames": pipeline.chunk_frames,
            "sampler": pipeline.sampler.name,
            "max_sessions": state.settings.max_sessions,
            "active_sessions": len(state.sessions),
        }

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        await StreamConnection(socket, state).serve()

    @app.get("/v1/sessions/{session_id}/video.mp4")
    def session_video(session_id: str, request: Request) -> Response:
        require_token(request)
        session = state.sessions.get(session_id) or state.finished_sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id}")
        return Response(
            mp4_bytes(session.video(), pipeline.fps),
            media_type="video/mp4",
            headers={"Content-Disposition": f'attachment; filename="helios-{session_id}.mp4"'},
        )

    @app.post("/v1/videos", status_code=202)
    async def create_job(request: Request) -> dict:
        require_token(request)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(422, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise HTTPException(422, "the body must be a JSON object")
        if body.get("frames", 1) is None:
            raise HTTPException(422, "an HTTP job needs a finite number of frames")
        try:
            generation = request_from_message(body, pipeline, state.settings.max_frames)
            job_id = state.jobs.submit(generation)
        except ProtocolError as exc:
            raise HTTPException(422, str(exc)) from None
        except QueueFull as exc:
            raise HTTPException(429, str(exc)) from None
        return {"id": job_id, "status": "queued"}

    @app.get("/v1/videos/{job_id}")
    def job_status(job_id: str) -> dict:
        status = state.jobs.status(job_id)
        if status is None:
            raise HTTPException(404, f"no job {job_id}")
        return status

    @app.get("/v1/videos/{job_id}/content")
    def job_content(job_id: str) -> Response:
        job = state.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if job["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['status']}")
        return Response(job["video"], media_type="video/mp4")

    return app


def run(
    pipeline: HeliosPipeline, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None
) -> None:
    import uvicorn

    uvicorn.run(create_app(pipeline, settings), host=host, port=port, log_level="info")
