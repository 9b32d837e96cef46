"""A real server on loopback with the embedded default model (at 64×128 instead of 128×192: the protocol
is the same, and a chunk costs a third of the pixels — most of these tests' time is generation)."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768 and up on Linux): a port the kernel
    hands out itself (bind to 0) can be handed out again before our server binds it — torchrun's
    rendezvous takes one that way and once took ours."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


@pytest.fixture(scope="session")
def default_pipeline():
    from helios import HeliosPipeline

    pipeline = HeliosPipeline.from_pretrained(device="cpu")
    pipeline.height, pipeline.width = 64, 128  # (sizes are multiples of 64)
    return pipeline


@pytest.fixture
def serve(default_pipeline):
    """Start servers with given settings; all are shut down at the end of the test."""
    import uvicorn

    from helios.serve.app import ServeSettings, create_app

    servers = []

    def start(**settings):
        port = free_port()
        app = create_app(default_pipeline, ServeSettings(**settings))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 20
        while not server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        servers.append((server, thread))
        app.state.uvicorn = server
        return f"127.0.0.1:{port}", app

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)
