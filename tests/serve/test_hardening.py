"""The server against a hostile or careless client on loopback: every route behind the token, no
cross-site sessions, bounded work and memory, cancellation, and a fuzz of the message schema in which
every malformed message gets an error and the socket keeps serving. Loops are bounded in count and time."""

from __future__ import annotations

import base64
import json
import random
import struct
import time
import zlib

import httpx
from websockets.sync.client import connect

from .test_protocol import FAST, receive, receive_until

GOOD = {"type": "start", "prompt": "a red circle moves right slowly on a black background", "frames": 33, **FAST}


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that declares width×height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def still_serves(ws) -> None:
    ws.send(json.dumps(GOOD))
    assert receive(ws)["type"] == "started"
    assert receive_until(ws, "done")[-1]["frames"] == 33


BAD_MESSAGES = [
    ('{"type": "start", "prompt": "x", "seed": "abc"}', "bad_input", "seed"),
    ('{"type": "start", "prompt": "x", "seed": Infinity}', "bad_input", "seed"),
    ('{"type": "start", "prompt": "x", "seed": -1}', "bad_input", "seed"),
    ('{"type": "start", "prompt": "x", "seed": 99999999999999999999999}', "bad_input", "seed"),
    ('{"type": "start", "prompt": "x", "steps": 5.5}', "bad_input", "steps"),
    ('{"type": "start", "prompt": "x", "steps": 100000}', "bad_input", "steps"),
    ('{"type": "start", "prompt": "x", "steps": [100000, 1, 1]}', "bad_input", "steps"),
    ('{"type": "start", "prompt": "x", "steps": true}', "bad_input", "steps"),
    ('{"type": "start", "prompt": "x", "preset": ["x"]}', "bad_input", "preset"),
    ('{"type": "start", "prompt": "x", "preset": "helios-fast"}', "bad_input", "preset"),
    ('{"type": "start", "prompt": "x", "guidance_scale": [1]}', "bad_input", "guidance_scale"),
    ('{"type": "start", "prompt": "x", "guidance_scale": NaN}', "bad_input", "guidance_scale"),
    ('{"type": "start", "prompt": "x", "guidance_scale": 1e9}', "bad_input", "guidance_scale"),
    ('{"type": "start", "prompt": "x", "frames": 1000000000}', "bad_input", "frames"),
    ('{"type": "start", "prompt": "x", "frames": "many"}', "bad_input", "frames"),
    ('{"type": "start", "prompt": "' + "x" * 3000 + '"}', "bad_input", "prompt"),
    ('{"type": "start", "prompt": 7}', "bad_input", "prompt"),
    ('{"type": "start", "prompts": "a then b"}', "bad_input", "prompts"),
    ('{"type": "start", "prompts": [{"prompt": "a", "chunk": -1}]}', "bad_input", "chunk"),
    ('{"type": "start", "prompts": [{"prompt": "a", "chunk": 0, "transition": 0}]}', "bad_input", "transition"),
    ('{"type": "start", "prompts": [{"prompt": "a", "chunk": 2}]}', "bad_input", "chunk 0"),
    ('{"type": "start", "prompt": "x", "negative": "y"}', "bad_input", "unknown field"),
    ('{"type": "start", "prompt": "x", "image": 5}', "bad_input", "base64"),
    ('{"type": "start", "prompt": "x", "image_noise": 2}', "bad_input", "image_noise"),
    ('{"type": "start", "prompt": "x", "video_noise": 0.2}', "bad_input", "applies to I2V / V2V"),
    ('{"type": "start", "prompt": "x", "skip_first_chunk": "yes"}', "bad_input", "skip_first_chunk"),
    ('{"type": "start", "prompt": "x", "decoder_carry": "yes"}', "bad_input", "decoder_carry"),
    ('{"type": "start", "prompt": "x", "decoder_carry": true}', "bad_input", "decoder_carry needs the Wan VAE"),
    ('{"type": "start", "prompt": "x", "video": "bm90IGEgdmlkZW8="}', "bad_input", "video"),
    ('{"type": 123}', "bad_message", "type"),
    ("[" * 100000 + "]" * 100000, "bad_message", "JSON"),
    ('{"type": "prompt", "prompt": "x"}', "bad_state", "start"),
    ('{"type": "' + "d" * 5000 + '"}', "unknown_type", "unknown message type"),
]


def test_every_bad_message_is_an_error_and_the_socket_stays(serve):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream", max_size=None) as ws:
        for payload, code, mentions in BAD_MESSAGES:
            ws.send(payload)
            error = receive(ws)
            assert error["type"] == "error" and error["code"] == code and mentions in error["message"], (payload, error)
        still_serves(ws)


def test_words_the_model_does_not_know_are_named_when_a_session_starts(serve):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(json.dumps({**GOOD, "prompt": "a red dragon moves right"}))
        assert receive(ws)["unknown_words"] == ["dragon"]
        receive_until(ws, "done")
        ws.send(json.dumps(GOOD))
        assert "unknown_words" not in receive(ws)
        receive_until(ws, "done")


def test_binary_frames_and_decompression_bombs_are_refused(serve):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(b"\x00\x01binary")
        assert receive(ws)["code"] == "bad_message"
        bomb = base64.b64encode(png_header_only(13000, 13000)).decode()
        ws.send(json.dumps({**GOOD, "image": bomb}))
        error = receive(ws)
        assert error["code"] == "bad_input" and "pixels allowed" in error["message"], error
        still_serves(ws)


def test_fuzzed_start_messages_never_drop_the_socket(serve):
    """120 random mutations of a valid start message: each gets an error or runs; the socket stays."""
    host, _ = serve()
    rng = random.Random(0)
    values = [None, True, -1, 0, 1, 2**70, 1.5, float("inf"), "", "x" * 50, [], [1], {}, {"a": 1}, [[1]], "helios-mid"]
    keys = ["prompt", "prompts", "frames", "seed", "preset", "steps", "guidance_scale", "image", "video", "extra"]
    deadline = time.time() + 90
    outcomes = {"error": 0, "started": 0}
    with connect(f"ws://{host}/v1/stream") as ws:
        for _ in range(120):
            assert time.time() < deadline
            message = dict(GOOD)
            for key in rng.sample(keys, rng.randint(1, 3)):
                message[key] = rng.choice(values)
            ws.send(json.dumps(message, allow_nan=True))
            reply = receive(ws)
            outcomes[reply["type"]] += 1
            if reply["type"] == "started":
                ws.send(json.dumps({"type": "stop"}))
                receive_until(ws, "done")
            else:
                assert reply["code"] in ("bad_input", "bad_message") and reply["message"], reply
        still_serves(ws)
    assert outcomes["error"] > 90  # most mutations are invalid, and each one was answered


def test_every_route_needs_the_token_and_no_url_carries_it(serve):
    host, _ = serve(token="tökén-ü")
    base = f"http://{host}"
    for method, path in [
        ("GET", "/v1/info"),
        ("GET", "/v1/videos/abc"),
        ("GET", "/v1/videos/abc/content"),
        ("DELETE", "/v1/videos/abc"),
        ("GET", "/v1/sessions/abc/video.mp4"),
        ("POST", "/v1/videos"),
    ]:
        assert httpx.request(method, base + path, json=GOOD if method == "POST" else None).status_code == 401, path
        assert httpx.request(method, base + path + "?token=tökén-ü").status_code == 401, path
    assert httpx.get(f"{base}/docs").status_code == 404 and httpx.get(f"{base}/openapi.json").status_code == 404
    assert httpx.get(f"{base}/").status_code == 200  # the page holds no secret
    good = {"Authorization": b"Bearer " + "tökén-ü".encode()}  # raw UTF-8 bytes on the wire
    assert httpx.get(f"{base}/v1/info", headers=good).status_code == 200
    assert httpx.get(f"{base}/v1/videos/abc", headers=good).status_code == 404
    with connect(f"ws://{host}/v1/stream") as ws:  # a wrong non-ASCII token is refused, not a crash
        ws.send(json.dumps({"type": "auth", "token": "tökén-x"}))
        assert receive(ws)["code"] == "unauthorized"
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(json.dumps({"type": "auth", "token": "tökén-ü"}))
        still_serves(ws)


def test_other_origins_cannot_drive_the_server(serve):
    host, _ = serve(allowed_origins=("https://studio.example",))
    with connect(f"ws://{host}/v1/stream", origin="https://evil.example") as ws:
        assert receive(ws)["code"] == "forbidden_origin"
    for origin in (f"http://{host}", "https://studio.example"):
        with connect(f"ws://{host}/v1/stream", origin=origin) as ws:
            still_serves(ws)


def test_a_client_that_leaves_frees_its_slot_within_seconds(serve):
    host, _ = serve(max_sessions=1)
    ws = connect(f"ws://{host}/v1/stream")
    ws.send(json.dumps({**GOOD, "frames": None, "steps": 100}))  # the most work a request may ask
    assert receive(ws)["type"] == "started"
    ws.close()
    started = time.time()
    while httpx.get(f"http://{host}/v1/info").json()["active_sessions"] and time.time() - started < 30:
        time.sleep(0.1)
    assert time.time() - started < 10  # cancelled within a sampling step, not after the chunk
    with connect(f"ws://{host}/v1/stream") as again:
        still_serves(again)


def test_paused_sessions_hold_no_server_thread_and_time_out(serve):
    host, _ = serve(max_sessions=8, pause_timeout=2.0)
    paused = []
    try:
        for _ in range(7):  # more than the 6 threads of the default pool on 2 CPUs
            ws = connect(f"ws://{host}/v1/stream")
            ws.send(json.dumps({**GOOD, "frames": None}))
            assert receive(ws)["type"] == "started"
            ws.send(json.dumps({"type": "pause"}))
            receive_until(ws, "paused")
            paused.append(ws)
        started = time.time()
        with connect(f"ws://{host}/v1/stream") as eighth:
            still_serves(eighth)
        assert time.time() - started < 30
        messages = receive_until(paused[0], "done", timeout=60)  # the pause timeout ends it
        assert any(m["type"] == "error" and "paused for more than" in m["message"] for m in messages)
    finally:
        for ws in paused:
            ws.close()


def test_idle_connections_are_closed(serve):
    host, _ = serve(idle_timeout=1.0)
    with connect(f"ws://{host}/v1/stream") as ws:
        assert receive(ws, timeout=10)["code"] == "idle"


def test_http_jobs_are_bounded_cancellable_and_quiet_about_prompts(serve):
    host, _ = serve(max_queued_jobs=2, max_message_bytes=20000)
    base = f"http://{host}"
    assert httpx.post(f"{base}/v1/videos", json={"prompt": "x", "steps": [100000] * 3}).status_code == 422
    assert httpx.post(f"{base}/v1/videos", json={"prompt": "x", "frames": None}).status_code == 422
    assert httpx.post(f"{base}/v1/videos", content=b'{"prompt": "x", "guidance_scale": NaN}').status_code == 422
    assert httpx.post(f"{base}/v1/videos", content=b"[" * 30000).status_code == 413
    assert httpx.post(f"{base}/v1/videos", json={"prompt": "x" * 5000}).status_code == 422
    long = httpx.post(f"{base}/v1/videos", json={"prompt": "a red circle", "frames": 3000, "steps": 100}).json()["id"]
    queued = httpx.post(f"{base}/v1/videos", json={"prompt": "a red circle", "frames": 33, **FAST}).json()["id"]
    assert httpx.post(f"{base}/v1/videos", json={"prompt": "x"}).status_code == 429  # two already waiting/running
    assert "prompt" not in httpx.get(f"{base}/v1/videos/{queued}").json()
    assert httpx.delete(f"{base}/v1/videos/{queued}").json()["status"] == "cancelled"
    assert httpx.delete(f"{base}/v1/videos/{long}").status_code == 200
    deadline = time.time() + 30
    while httpx.get(f"{base}/v1/videos/{long}").json()["status"] != "cancelled":
        assert time.time() < deadline
        time.sleep(0.1)
    assert httpx.get(f"{base}/v1/videos/{long}/content").status_code == 409
    done = httpx.post(f"{base}/v1/videos", json={"prompt": "a red circle", "frames": 33, **FAST}).json()["id"]
    while httpx.get(f"{base}/v1/videos/{done}").json()["status"] != "done":  # the queue serves the next job
        assert time.time() < deadline + 60
        time.sleep(0.1)


def test_session_video_before_the_first_chunk_is_a_conflict(serve):
    host, app = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(json.dumps({**GOOD, "frames": None}))
        session = receive(ws)["session"]
        ws.send(json.dumps({"type": "pause"}))
        app.state.sessions[session].recorded.clear()  # as before any chunk was made
        assert httpx.get(f"http://{host}/v1/sessions/{session}/video.mp4").status_code == 409
        assert httpx.get(f"http://{host}/v1/sessions/nope/video.mp4").status_code == 404
