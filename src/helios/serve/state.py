"""What one server's routes and connections share: its settings, live sessions, slots and jobs."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..generation import HeliosPipeline
from .jobs import JobQueue
from .session import Session


@dataclass
class ServeSettings:
    max_sessions: int = 1
    queue_size: int = 4
    slow_client: str = "wait"  # "wait" (backpressure) | "drop"
    max_message_bytes: int = 8 * 2**20  # an I2V image or a short V2V clip fits; more is refused
    max_frames: int = 24 * 60 * 10  # per request; None in a start message means "until stopped"
    token: str | None = None  # required (query ?token= or "Authorization: Bearer") when set
    max_jobs: int = 32  # finished HTTP jobs kept for download


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
        self.jobs = JobQueue(self.pipeline, self.settings.max_jobs)

    def authorised(self, headers, query) -> bool:
        if self.settings.token is None:
            return True
        given = query.get("token") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        return secrets.compare_digest(given or "", self.settings.token)
