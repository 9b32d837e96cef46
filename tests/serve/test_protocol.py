"""The WebSocket protocol and the HTTP job API against a real server on loopback."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from helios.media import read_video, write_frames

FAST = {"steps": 1}


def receive(ws, timeout=60.0):
    return json.loads(ws.recv(timeout=timeout))


def receive_until(ws, kind, timeout=120.0):
    """Messages up to and including the first of ``kind``."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        message = receive(ws, timeout=deadline - time.time())
        seen.append(message)
        if message["type"] == kind:
            return seen
    raise AssertionError(f"no {kind!r} message; got {[m['type'] for m in seen]}")


def test_chunks_arrive_in_order_with_timing(serve):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "prompt": "a large red circle moves right slowly on a black background",
                    "frames": 99,
                    **FAST,
                }
            )
        )
        started = receive(ws)
        assert started["type"] == "started" and started["fps"] == 24 and started["frames"] == 99
        messages = receive_until(ws, "done")
    chunks = [m for m in messages if m["type"] == "chunk"]
    assert [c["index"] for c in chunks] == [0, 1, 2]
    assert [len(c["frames"]) for c in chunks] == [33, 33, 31]
    assert [c["first_frame"] for c in chunks] == [0, 33, 66]
    assert all(c["generation_seconds"] > 0 for c in chunks)
    assert chunks[0]["since_start_seconds"] < chunks[1]["since_start_seconds"] < chunks[2]["since_start_seconds"]
    assert messages[-1] == {"type": "done", "frames": 97, "dropped": 0, "session": started["session"]}


def test_prompt_change_pause_resume_stop(serve):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "prompt": "a small blue square moves up quickly on a gray background",
                    "frames": None,
                    **FAST,
                }
            )
        )
        assert receive(ws)["type"] == "started"
        first = receive_until(ws, "chunk")[-1]
        assert first["index"] == 0
        ws.send(
            json.dumps(
                {
                    "type": "prompt",
                    "prompt": "a large green triangle moves left slowly on a navy background",
                    "transition": 1,
                }
            )
        )
        scheduled = receive_until(ws, "prompt_scheduled")[-1]
        change_at = scheduled["chunk"]
        messages = []
        while True:
            messages.append(receive(ws))
            if messages[-1]["type"] == "chunk" and messages[-1]["index"] >= change_at:
                break
        chunk = messages[-1]
        assert chunk["prompt"] == "a large green triangle moves left slowly on a navy background"
        before = [m for m in messages if m["type"] == "chunk" and m["index"] < change_at]
        assert all(m["prompt"].startswith("a small blue square") for m in before)

        ws.send(json.dumps({"type": "pause"}))
        receive_until(ws, "paused")
        time.sleep(1.0)  # let the chunk in progress finish and drain
        while True:
            try:
                receive(ws, timeout=1.5)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            receive(ws, timeout=2.0)  # paused: nothing new arrives
        ws.send(json.dumps({"type": "resume"}))
        assert any(m["type"] == "chunk" for m in receive_until(ws, "chunk"))
        ws.send(json.dumps({"type": "stop"}))
        done = receive_until(ws, "done")[-1]
        assert done["frames"] >= 33 * 3


@pytest.mark.parametrize(
    "payload, code",
    [
        ("{not json", "bad_message"),
        ('["start"]', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "prompt", "prompt": "x"}', "bad_state"),
        ('{"type": "start", "prompt": "x", "frames": 0}', "bad_input"),
        ('{"type": "start", "prompt": "   "}', "bad_input"),
        ('{"type": "start", "prompt": "x", "image": "%%%"}', "bad_input"),
        ('{"type": "start", "prompt": "x", "image": "aGVsbG8="}', "bad_input"),
        ('{"type": "start", "prompt": "x", "steps": [1, 1]}', "bad_input"),
        ('{"type": "start", "prompt": "' + "x" * 30000 + '"}', "too_large"),
    ],
)
def test_bad_messages_get_clear_errors_and_the_session_keeps_serving(serve, payload, code):
    host, _ = serve(max_message_bytes=20000)
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(payload)
        error = receive(ws)
        assert error["type"] == "error" and error["code"] == code and error["message"]
        ws.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": 33, **FAST}))
        assert receive(ws)["type"] == "started"
        assert receive_until(ws, "done")[-1]["frames"] == 33


def test_second_session_over_the_limit_is_busy_and_the_first_continues(serve):
    host, _ = serve(max_sessions=1)
    with connect(f"ws://{host}/v1/stream") as first:
        first.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": 66, **FAST}))
        assert receive(first)["type"] == "started"
        with connect(f"ws://{host}/v1/stream") as second:
            refusal = receive(second)
            assert refusal["type"] == "error" and refusal["code"] == "busy"
        assert receive_until(first, "done")[-1]["frames"] == 65


def test_disconnect_frees_the_session(serve):
    host, _ = serve(max_sessions=1)
    ws = connect(f"ws://{host}/v1/stream")
    ws.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": None, **FAST}))
    receive_until(ws, "chunk")
    ws.close()
    deadline = time.time() + 60
    while httpx.get(f"http://{host}/v1/info").json()["active_sessions"] and time.time() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"http://{host}/v1/info").json()["active_sessions"] == 0
    with connect(f"ws://{host}/v1/stream") as again:  # the slot is free again
        again.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": 33, **FAST}))
        assert receive(again)["type"] == "started"
        receive_until(again, "done")


def test_session_video_download(serve, tmp_path):
    host, _ = serve()
    with connect(f"ws://{host}/v1/stream") as ws:
        ws.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": 66, **FAST}))
        session = receive(ws)["session"]
        receive_until(ws, "done")
        response = httpx.get(f"http://{host}/v1/sessions/{session}/video.mp4", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    (tmp_path / "s.mp4").write_bytes(response.content)
    assert read_video(tmp_path / "s.mp4")[0].shape == (65, 64, 128, 3)


def test_http_job_api_end_to_end(serve, tmp_path):
    host, _ = serve()
    base = f"http://{host}"
    created = httpx.post(
        f"{base}/v1/videos",
        json={"prompt": "a small white triangle moves down quickly on a black background", "frames": 33, "steps": 1},
    )
    assert created.status_code == 202
    job = created.json()["id"]
    deadline = time.time() + 120
    while (status := httpx.get(f"{base}/v1/videos/{job}").json())["status"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.2)
    assert status["status"] == "done" and status["frames"] == 33 and status["chunks_done"] == 1
    content = httpx.get(f"{base}/v1/videos/{job}/content", timeout=60)
    (tmp_path / "job.mp4").write_bytes(content.content)
    assert read_video(tmp_path / "job.mp4")[0].shape == (33, 64, 128, 3)
    assert httpx.get(f"{base}/v1/videos/nope").status_code == 404
    assert httpx.post(f"{base}/v1/videos", json={"prompt": ""}).status_code == 422
    # I2V with the conditioning knobs
    png = write_frames(np.full((1, 64, 128, 3), 90, np.uint8), tmp_path / "png")[0]
    image = base64.b64encode(png.read_bytes()).decode()
    knobs = {"image": image, "image_noise": [0.2, 0.3], "video_noise": 0.25, "skip_first_chunk": True}
    created = httpx.post(f"{base}/v1/videos", json={"prompt": "a red circle", "frames": 33, "steps": 1, **knobs})
    assert created.status_code == 202, created.text
    job = created.json()["id"]
    while (status := httpx.get(f"{base}/v1/videos/{job}").json())["status"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.2)
    assert status["status"] == "done", status


def test_token_is_required_when_set(serve):
    host, _ = serve(token="s3cret")
    start = json.dumps({"type": "start", "prompt": "a red circle", "frames": 33, **FAST})
    for url in (f"ws://{host}/v1/stream", f"ws://{host}/v1/stream?token=s3cret"):  # never taken from a URL
        with connect(url) as ws:
            ws.send(start)
            assert receive(ws)["code"] == "unauthorized"
    with connect(f"ws://{host}/v1/stream", additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        ws.send(start)
        assert receive(ws)["type"] == "started"
        receive_until(ws, "done")
    with connect(f"ws://{host}/v1/stream") as ws:  # what the page does: the token as the first message
        ws.send(json.dumps({"type": "auth", "token": "s3cret"}))
        ws.send(start)
        assert receive(ws)["type"] == "started"
        receive_until(ws, "done")
    assert httpx.post(f"http://{host}/v1/videos", json={"prompt": "x"}).status_code == 401


@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_slow_client_policies(default_pipeline, policy):
    from helios.generation import GenerationRequest
    from helios.serve.session import Session

    session = Session(
        default_pipeline,
        GenerationRequest(prompt="a red circle", num_frames=33 * 5, steps=1),
        queue_size=1,
        slow_client=policy,
    )
    session.start()
    time.sleep(3.0)  # nobody reads the queue
    if policy == "wait":
        assert not session.finished.is_set()  # generation waits for the client (backpressure)
        assert session.recorded_frames <= 33 * 3
    else:
        session.finished.wait(60)
        assert session.dropped >= 3  # chunks the client missed were dropped, generation went on
    session.stop()
    session.join(30)
    assert session.finished.is_set()


def test_server_shutdown_ends_live_sessions(serve):
    host, app = serve()
    ws = connect(f"ws://{host}/v1/stream")
    ws.send(json.dumps({"type": "start", "prompt": "a red circle", "frames": None, **FAST}))
    session_id = receive(ws)["session"]
    receive_until(ws, "chunk")
    session = app.state.sessions[session_id]
    app.state.uvicorn.should_exit = True  # what SIGTERM does
    assert session.finished.wait(60)  # the generation thread ended after its chunk in progress
    session.join(30)
    ws.close()
