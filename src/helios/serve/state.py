"""What one server's routes and connections share: its settings, live sessions, slots and jobs, and
the two gatekeepers (token and origin)."""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..generation import HeliosPipeline
from .jobs import JobQueue
from .schema import Limits
from .session import Session


@dataclass
class ServeSettings:
    max_sessions: int = 1
    queue_size: int = 4
    slow_client: str = "wait"  # "wait" (backpressure) | "drop"
    max_message_bytes: int = 8 * 2**20  # a WebSocket message or an HTTP body; an I2V image or a short clip fits
    token: str | None = None  # required ("Authorization: Bearer", or a first {"type": "auth"} message) when set
    allowed_origins: tuple[str, ...] = ()  # web pages of other origins allowed to open a session
    max_jobs: int = 32  # HTTP jobs kept (finished ones are dropped first)
    max_queued_jobs: int = 8  # HTTP jobs waiting or running at once; more are refused (429)
    pause_timeout: float = 600.0  # a paused session ends after this many seconds
    idle_timeout: float = 300.0  # a connection with no running generation is closed after this long silent
    auth_timeout: float = 10.0  # seconds to send the auth message
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be at least 1, got {getattr(self, name)}"
            for name in ("max_sessions", "queue_size", "max_jobs", "max_queued_jobs", "max_message_bytes")
            if getattr(self, name) < 1
        ]
        if self.slow_client not in ("wait", "drop"):
            problems.append(f"slow_client must be 'wait' or 'drop', got {self.slow_client!r}")
        if self.token is not None and not self.token:
            problems.append("token must not be empty")
        if problems:
            raise ValueError("; ".join(problems))


class _RecentSessions:
    """Sessions that ended stay downloadable for a while (the last ``limit`` of them)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.ended: OrderedDict[str, Session] = OrderedDict()

    def remember(self, session: Session) -> None:
        self.ended[session.id] = session
        while len(self.ended) > self.limit:
            self.ended.popitem(last=False)

    def get(self, session_id: str) -> Session | None:
        return self.ended.get(session_id)


@dataclass
class ServerState:
    """What every connection and route of one server shares."""

    pipeline: HeliosPipeline
    settings: ServeSettings
    sessions: dict[str, Session] = field(default_factory=dict)
    finished_sessions: _RecentSessions = field(default_factory=lambda: _RecentSessions(limit=8))

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.settings.max_sessions)
        self.jobs = JobQueue(self.pipeline, self.settings.max_jobs, self.settings.max_queued_jobs)

    def token_matches(self, given: str | bytes | None) -> bool:
        """Constant-time comparison of UTF-8 bytes (non-ASCII tokens compare safely, never raise)."""
        expected = self.settings.token
        if expected is None:
            return True
        if isinstance(given, str):
            given = given.encode("utf-8", "surrogateescape")
        if not isinstance(given, bytes):
            return False
        return hmac.compare_digest(given, expected.encode("utf-8", "surrogateescape"))

    def authorised(self, headers) -> bool:
        """The token from an ``Authorization: Bearer`` header (tokens never travel in URLs: they would
        land in access logs and browser histories)."""
        if self.settings.token is None:
            return True
        header = headers.get("authorization", "")
        # HTTP headers arrive decoded as Latin-1; their raw bytes are the client's UTF-8.
        raw = header.encode("latin-1", "replace")
        return raw.startswith(b"Bearer ") and self.token_matches(raw.removeprefix(b"Bearer ").strip())

    def origin_allowed(self, headers) -> bool:
        """Browsers send ``Origin`` with every WebSocket: only this server's own page (same host and
        port) or an explicitly allowed origin may drive it. Clients that send no Origin are not pages."""
        origin = headers.get("origin")
        if origin is None or origin in self.settings.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()
