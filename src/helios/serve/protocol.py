"""One WebSocket connection of the live protocol (``docs/streaming.md``): read client messages,
run a :class:`Session`, forward its chunks. Every problem reaches the client as
``{"type": "error", ...}``; the socket is closed by the server only after a ``busy`` refusal or an
authentication failure."""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket, WebSocketDisconnect

from .schema import ProtocolError, request_from_message
from .session import Session
from .state import ServerState


class StreamConnection:
    def __init__(self, socket: WebSocket, server: ServerState):
        self.socket = socket
        self.server = server
        self.session: Session | None = None
        self.forward: asyncio.Task | None = None

    async def serve(self) -> None:
        """Run the connection until the client leaves; the session's slot is freed afterwards."""
        server, socket = self.server, self.socket
        await socket.accept()
        if not server.authorised(socket.headers, socket.query_params):
            await socket.send_json({"type": "error", "code": "unauthorized", "message": "missing or wrong token"})
            await socket.close(code=4401)
            return
        if not server.slots.acquire(blocking=False):
            limit = server.settings.max_sessions
            await socket.send_json(
                {"type": "error", "code": "busy", "message": f"all {limit} session slots are in use; try again later"}
            )
            await socket.close(code=4429)
            return
        try:
            await self._read_messages()
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.forward is not None:
            self.forward.cancel()
        session = self.session
        if session is not None:
            session.stop()
            # The slot is free only once the worker has finished its chunk in progress.
            await asyncio.get_running_loop().run_in_executor(None, session.join, 60)
            self.server.sessions.pop(session.id, None)
            self.server.finished_sessions.remember(session)
        self.server.slots.release()

    async def _forward_chunks(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, session.chunks.get)
            if message is None:
                break
            await self.socket.send_json(message)
        if session.error:
            await self.socket.send_json({"type": "error", "code": "generation_failed", "message": session.error})
        await self.socket.send_json(
            {"type": "done", "frames": session.recorded_frames, "dropped": session.dropped, "session": session.id}
        )

    async def _read_messages(self) -> None:
        while True:
            text = await self.socket.receive_text()
            try:
                await self._handle(self._parse(text))
            except ProtocolError as exc:
                await self.socket.send_json({"type": "error", "code": exc.code, "message": str(exc)})
            forward = self.forward
            if forward is not None and forward.done() and not forward.cancelled() and forward.exception() is not None:
                raise forward.exception()

    def _parse(self, text: str) -> dict:
        limit = self.server.settings.max_message_bytes
        size = len(text.encode())
        if size > limit:
            raise ProtocolError("too_large", f"message of {size} bytes exceeds {limit}")
        try:
            message = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError("bad_message", f"not valid JSON: {exc.msg}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError("bad_message", "a message is a JSON object with a string 'type'")
        return message

    async def _handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "start":
            await self._start(message)
        elif kind in ("prompt", "pause", "resume", "stop"):
            session = self.session
            if session is None or session.finished.is_set():
                raise ProtocolError("bad_state", f"'{kind}' needs a running generation; send 'start' first")
            if kind == "prompt":
                await self._change_prompt(session, message)
            elif kind == "pause":
                session.pause()
                await self.socket.send_json({"type": "paused"})
            elif kind == "resume":
                session.resume()
                await self.socket.send_json({"type": "resumed"})
            else:
                session.stop()
                await self.socket.send_json({"type": "stopping"})
        else:
            raise ProtocolError(
                "unknown_type", f"unknown message type {kind!r}; expected start, prompt, pause, resume or stop"
            )

    async def _start(self, message: dict) -> None:
        server, loop = self.server, asyncio.get_running_loop()
        if self.session is not None and not self.session.finished.is_set():
            raise ProtocolError("bad_state", "a generation is already running in this session; stop it first")
        request = await loop.run_in_executor(
            None, request_from_message, message, server.pipeline, server.settings.max_frames
        )
        session = Session(server.pipeline, request, server.settings.queue_size, server.settings.slow_client)
        try:
            await loop.run_in_executor(None, session.start)
        except ValueError as exc:
            raise ProtocolError("bad_input", str(exc)) from None
        self.session = session
        server.sessions[session.id] = session
        pipeline = server.pipeline
        await self.socket.send_json(
            {
                "type": "started",
                "session": session.id,
                "fps": pipeline.fps,
                "frames": request.num_frames,
                "height": pipeline.height,
                "width": pipeline.width,
            }
        )
        self.forward = asyncio.create_task(self._forward_chunks(session))

    async def _change_prompt(self, session: Session, message: dict) -> None:
        prompt, transition = message.get("prompt"), message.get("transition", 1)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ProtocolError("bad_input", "prompt must be a non-empty string")
        if not isinstance(transition, int) or transition < 1:
            raise ProtocolError("bad_input", "transition is a number of chunks ≥ 1 (1 = hard cut)")
        chunk = await asyncio.get_running_loop().run_in_executor(None, session.update_prompt, prompt, transition)
        await self.socket.send_json(
            {"type": "prompt_scheduled", "chunk": chunk, "prompt": prompt, "transition": transition}
        )
