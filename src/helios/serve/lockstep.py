"""Serving from several processes: the first rank serves, the others follow it in lockstep.

Under context parallelism every rank must run the same transformer calls in the same order (each
call exchanges activations with the others), but only the first rank has the server, its sessions,
its clients' prompt changes and stops. ``LockstepPipeline`` stands in for the pipeline on the first
rank: each generation it starts, and each chunk it computes, is first sent to the other ranks as a
command on a separate gloo group — ``("run", request)``, ``("next", prompt changes)``, ``("close",)``
— and ``follow`` on every other rank repeats it. Prompt changes are applied on every rank at the
chunk boundary where the first rank applies them, so all ranks sample the same video.

Two consequences, both stated to users: one generation runs at a time (a second one is refused as
busy), and a stop takes effect at the end of the chunk in progress (a chunk cannot be abandoned
halfway on one rank while the others still wait for its exchanges).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import torch.distributed as dist

from ..generation import GenerationRequest, HeliosPipeline
from ..generation.pipeline import LiveStream

IDLE_LIMIT = timedelta(days=7)  # how long followers wait for the next command of an idle server


class Busy(RuntimeError):
    """A generation was asked for while another one runs on the ranks."""


def control_group() -> dist.ProcessGroup:
    """The group the commands travel on (every rank calls this once, together): gloo, so commands
    are CPU objects, with a timeout long enough for a server that waits for its next client."""
    return dist.new_group(backend="gloo", timeout=IDLE_LIMIT)


def _send(group: dist.ProcessGroup, command: tuple) -> None:
    dist.broadcast_object_list([command], src=0, group=group)


def _receive(group: dist.ProcessGroup) -> tuple:
    box = [None]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


class LockstepPipeline:
    """The first rank's pipeline: everything reads through to the real one; ``run`` and each chunk
    are sent to the followers first."""

    def __init__(self, pipeline: HeliosPipeline, group: dist.ProcessGroup):
        self.pipeline = pipeline
        self._group = group
        self._control = threading.Lock()  # orders the commands (server and worker threads send them)
        self._compute = threading.Lock()  # one chunk at a time on this rank, as on the followers
        self._active: LockstepStream | None = None

    def __getattr__(self, name: str):
        return getattr(self.pipeline, name)

    def run(self, request: GenerationRequest) -> LockstepStream:
        with self._control:
            if self._active is not None and not self._active.ended:
                raise Busy("busy: on several processes the server runs one generation at a time")
            stream = self.pipeline.run(request)  # bad input fails here, before any rank is told
            _send(self._group, ("run", request))
            self._active = LockstepStream(self, stream)
            return self._active

    def close(self) -> None:
        """Release the followers (at server shutdown)."""
        with self._control:
            if self._active is not None:
                self._active.ended = True
            _send(self._group, ("close",))

    def _next(self, stream: LockstepStream):
        with self._control:
            if stream.ended:
                raise StopIteration
            changes, stream.pending = stream.pending, []
            _send(self._group, ("next", changes))
        with self._compute:
            for prompt, transition in changes:
                stream.inner.update_prompt(prompt, transition)
            try:
                return next(stream.inner)
            except StopIteration:
                stream.ended = True
                raise


class LockstepStream:
    """A ``LiveStream`` whose prompt changes and stop wait for the next chunk boundary."""

    def __init__(self, owner: LockstepPipeline, inner: LiveStream):
        self._owner = owner
        self.inner = inner
        self.pending: list[tuple[str, int]] = []
        self.ended = False

    def __iter__(self) -> LockstepStream:
        return self

    def __next__(self):
        return self._owner._next(self)

    def update_prompt(self, prompt: str, transition: int = 1) -> int:
        with self._owner._control:
            self.pending.append((prompt, transition))
            return self.inner.next_index

    def stop(self) -> None:
        with self._owner._control:
            self.ended = True

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def follow(pipeline: HeliosPipeline, group: dist.ProcessGroup) -> None:
    """Every rank but the first: repeat the first rank's generations until it closes."""
    stream = None
    while True:
        command = _receive(group)
        if command[0] == "run":
            stream = pipeline.run(command[1])
        elif command[0] == "next":
            for prompt, transition in command[1]:
                stream.update_prompt(prompt, transition)
            next(stream, None)
        elif command[0] == "close":
            return
        else:
            raise RuntimeError(f"unknown command from the first rank: {command[0]!r}")
