"""One WebSocket connection of the live protocol (``docs/streaming.md``): check the origin and the
token, read client messages, run a :class:`Session`, forward its chunks.

Every problem reaches the client as ``{"type": "error", ...}`` and the socket stays open; the server
closes it only after a refusal (``busy``, ``unauthorized``, ``forbidden_origin``), an idle timeout,
or when the client is gone. A waiting connection holds no thread: chunks are handed over through an
asyncio event set from the session's worker.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time

from fastapi import WebSocket, WebSocketDisconnect

from .lockstep import Busy
from .schema import ProtocolError, prompt_change, request_from_message
from .session import END, Session
from .state import ServerState

CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN_ORIGIN, CLOSE_BUSY, CLOSE_IDLE = 4401, 4403, 4429, 4408


class StreamConnection:
    def __init__(self, socket: WebSocket, server: ServerState):
        self.socket = socket
        self.server = server
        self.session: Session | None = None
        self.forward: asyncio.Task | None = None
        self.ready = asyncio.Event()  # set (on the loop) whenever the session queued a message

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        await self.socket.send_json({"type": "error", "code": code, "message": message})
        await self.socket.close(code=close_code)

    async def serve(self) -> None:
        """Run the connection until the client leaves; the session's slot is freed afterwards."""
        server, socket = self.server, self.socket
        await socket.accept()
        if not server.origin_allowed(socket.headers):
            await self._refuse(
                "forbidden_origin", "this server does not accept pages from other origins", CLOSE_FORBIDDEN_ORIGIN
            )
            return
        try:
            if not server.authorised(socket.headers) and not await self._authenticate():
                await self._refuse("unauthorized", "missing or wrong token", CLOSE_UNAUTHORIZED)
                return
        except WebSocketDisconnect:
            return
        if not server.slots.acquire(blocking=False):
            limit = server.settings.max_sessions
            await self._refuse("busy", f"all {limit} session slots are in use; try again later", CLOSE_BUSY)
            return
        try:
            await self._read_messages()
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def _authenticate(self) -> bool:
        """A browser cannot set headers on a WebSocket: it sends ``{"type": "auth", "token": ...}`` first."""
        if self.server.settings.token is None:
            return True
        try:
            text = await asyncio.wait_for(self.socket.receive_text(), self.server.settings.auth_timeout)
            message = json.loads(text)
        except (TimeoutError, json.JSONDecodeError, KeyError, UnicodeDecodeError):
            return False
        return (
            isinstance(message, dict)
            and message.get("type") == "auth"
            and self.server.token_matches(message.get("token"))
        )

    async def _close(self) -> None:
        if self.forward is not None:
            self.forward.cancel()
        session = self.session
        if session is not None:
            session.stop()  # cancelled within one sampling step
            deadline = time.monotonic() + 60
            while not session.finished.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.server.sessions.pop(session.id, None)
            self.server.finished_sessions.remember(session)
        self.server.slots.release()

    def _notify(self) -> None:
        """Called by the session's worker thread after each queued message."""
        self._loop.call_soon_threadsafe(self.ready.set)

    async def _forward_chunks(self, session: Session) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while True:
                try:
                    message = session.chunks.get_nowait()
                except queue.Empty:  # wait for the next notification
                    break
                if message is END:
                    if session.error:
                        await self.socket.send_json(
                            {"type": "error", "code": "generation_failed", "message": session.error}
                        )
                    await self.socket.send_json(
                        {
                            "type": "done",
                            "frames": session.recorded_frames,
                            "dropped": session.dropped,
                            "session": session.id,
                        }
                    )
                    return
                await self.socket.send_json(message)

    async def _receive(self) -> str:
        """The next text message; an idle connection (no generation running) is closed after a while."""
        idle = self.session is None or self.session.finished.is_set()
        timeout = self.server.settings.idle_timeout if idle else None
        try:
            message = await asyncio.wait_for(self.socket.receive(), timeout)
        except TimeoutError:
            await self._refuse("idle", f"no message for {timeout:g} s; closing", CLOSE_IDLE)
            raise WebSocketDisconnect(CLOSE_IDLE) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("text") is None:
            raise ProtocolError("bad_message", "binary frames are not part of the protocol; send JSON text")
        return message["text"]

    async def _read_messages(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self._handle(self._parse(await self._receive()))
            except ProtocolError as exc:
                await self.socket.send_json({"type": "error", "code": exc.code, "message": str(exc)})

    def _parse(self, text: str) -> dict:
        limit = self.server.settings.max_message_bytes
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ProtocolError("too_large", f"message of {size} bytes exceeds {limit}")
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise ProtocolError("bad_message", f"not valid JSON: {reason}") from None
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
        elif kind == "auth":
            return  # already authenticated (or no token needed)
        else:
            raise ProtocolError(
                "unknown_type", f"unknown message type {kind[:40]!r}; expected start, prompt, pause, resume or stop"
            )

    async def _start(self, message: dict) -> None:
        server, loop = self.server, asyncio.get_running_loop()
        if self.session is not None and not self.session.finished.is_set():
            raise ProtocolError("bad_state", "a generation is already running in this session; stop it first")
        settings = server.settings
        # Decoding an upload and encoding prompts take a moment: off the event loop, returning at once.
        request = await loop.run_in_executor(None, request_from_message, message, server.pipeline, settings.limits)
        session = Session(
            server.pipeline,
            request,
            settings.queue_size,
            settings.slow_client,
            pause_timeout=settings.pause_timeout,
            notify=self._notify,
        )
        try:
            await loop.run_in_executor(None, session.start)
        except (ValueError, TypeError) as exc:
            raise ProtocolError("bad_input", str(exc)) from None
        except Busy as exc:  # several processes: a job holds the ranks
            raise ProtocolError("busy", str(exc)) from None
        if self.forward is not None:
            self.forward.cancel()
        self.ready.clear()
        self.session = session
        server.sessions[session.id] = session
        pipeline = server.pipeline
        started = {
            "type": "started",
            "session": session.id,
            "fps": pipeline.fps,
            "frames": request.num_frames,
            "height": pipeline.height,
            "width": pipeline.width,
        }
        unknown_words = getattr(pipeline.text_encoder, "unknown_words", None)
        if unknown_words is not None:  # a closed-vocabulary model ignores words it does not know: say which
            unknown = sorted({w for change in request.prompt_changes() for w in unknown_words(change.prompt)})
            if unknown:
                started["unknown_words"] = unknown
        await self.socket.send_json(started)
        self.forward = asyncio.create_task(self._forward_chunks(session))

    async def _change_prompt(self, session: Session, message: dict) -> None:
        prompt, transition = prompt_change(message, self.server.settings.limits)
        try:
            chunk = await asyncio.get_running_loop().run_in_executor(None, session.update_prompt, prompt, transition)
        except ValueError as exc:
            raise ProtocolError("bad_input", str(exc)) from None
        await self.socket.send_json(
            {"type": "prompt_scheduled", "chunk": chunk, "prompt": prompt, "transition": transition}
        )
