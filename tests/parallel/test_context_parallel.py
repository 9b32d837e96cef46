"""Context parallelism (Ulysses, and CFG-parallel batch splitting): two gloo processes on the CPU give
the single-process output, and their weight gradients sum to the single-process ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_context_parallel_matches_one_process_and_benchmarks_once(tmp_path):
    out = tmp_path / "speed.json"
    result = torchrun(["-m", "tests.parallel.cp_worker", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    _check_bench_speed(result.stdout, out)
    ring = report["ring"]  # ring attention: the same output, on a head count Ulysses cannot split
    assert ring["output"] < 1e-5 and ring["same_on_ranks"], ring
    assert ring["refused"] == "ring attention has no backward: train with Ulysses context parallelism"
    # the server's lockstep: the followed stream gives one process's frames, the prompt change lands
    # at chunk 1 on both ranks, a stop ends at the chunk boundary, a second generation meanwhile is busy
    lockstep = report["lockstep"]
    assert lockstep["chunks"] == [2, 1] and lockstep["max_difference"] <= 1, lockstep
    assert lockstep["notes"] == [1, "busy: on several processes the server runs one generation at a time"]
    cases = report["cases"]
    assert len(cases) == 4
    for case in cases:
        assert case["output"] < 1e-5, case
        assert case["grad"] < 1e-4, case
        assert case["same_on_ranks"], case
        assert case["own_layout"], case
        (whole_batch, whole), (local_batch, local) = case["tokens"]
        if case["batch"] == 2:  # the batch was split, each sample's sequence whole
            assert (local_batch, local) == (1, whole), case
        else:  # the sequence was split
            assert local_batch == whole_batch and local in (whole // 2, (whole + 1) // 2) and local < whole, case


def test_a_head_count_not_divisible_by_the_ranks_is_refused():
    from helios.model.context_parallel import check_heads

    check_heads(40, 8)
    with pytest.raises(ValueError, match="40 heads cannot be split over 3 ranks"):
        check_heads(40, 3)


def test_generate_under_torchrun_writes_the_single_process_video(tmp_path):
    """`helios generate` launched on two processes splits the default model's sequence (history
    included: two chunks), attends across the split by ring attention, and writes the frames one
    process writes."""
    import numpy as np

    from helios.media import read_image

    def read_frames(folder):
        return np.stack([read_image(path) for path in sorted(folder.glob("*.png"))])

    from helios.cli import main

    common = ["--prompt", "a large red circle moves left slowly on a black background", "--frames", "66"]
    common += ["--steps", "1,1,1", "--device", "cpu", "--height", "64", "--width", "128"]  # (small: quick)
    # the single-process reference in this process (a second interpreter would cost its start-up)
    assert main(["generate", *common, "--out", str(tmp_path / "one.mp4"), "--frames-dir", str(tmp_path / "one")]) == 0
    split = torchrun(
        [
            "-m",
            "helios.cli",
            "generate",
            *common,
            "--out",
            str(tmp_path / "two.mp4"),
            "--frames-dir",
            str(tmp_path / "two"),
            "--context-parallel",
            "ring",  # (Ulysses runs through `serve` below and the cases of cp_worker)
        ]
    )
    assert split.returncode == 0, split.stderr[-3000:]
    assert "context parallelism over 2 processes (cpu, ring)" in split.stderr
    assert split.stdout.count("wrote") == 1  # only the first rank writes and reports
    one, two = read_frames(tmp_path / "one"), read_frames(tmp_path / "two")
    assert (
        one.shape == two.shape and len(one) > 33 and one.shape[1:3] == (64, 128)
    )  # (history is used from the second chunk on)
    assert np.abs(one.astype(int) - two.astype(int)).max() <= 1


def _check_bench_speed(stdout: str, out: Path) -> None:
    """`helios bench speed`'s run on two processes: one table, one JSON, our Ulysses row."""
    assert stdout.count("| implementation |") == 1  # the first rank prints the table
    data = json.loads(out.read_text())
    assert data["meta"]["ranks"] == 2
    (row,) = data["results"]
    assert row["implementation"].endswith("×2 ranks (Ulysses)") and row["returned_frames"] == 33
    assert row["end_to_end_fps"] > 0


def test_serve_under_torchrun_streams_from_the_first_process():
    """`helios serve` on two processes: the first serves (one line says so), the second follows; a
    client streams three chunks and changes the prompt after the first arrives (it lands on the next
    chunk not yet started, as on one process); SIGTERM ends both processes."""
    import signal
    import time

    from websockets.sync.client import connect

    from tests.serve.conftest import free_port
    from tests.serve.test_protocol import FAST, receive, receive_until

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += ["-m", "helios.cli", "serve", "--device", "cpu", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                ws = connect(f"ws://127.0.0.1:{port}/v1/stream")
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read()[-3000:]
                time.sleep(0.2)
        with ws:
            ws.send(json.dumps({"type": "start", "prompt": "a large red circle", "frames": 99, **FAST}))
            assert receive(ws)["type"] == "started"
            assert receive_until(ws, "chunk")[-1]["index"] == 0
            ws.send(json.dumps({"type": "prompt", "prompt": "a small blue square", "transition": 1}))
            messages = receive_until(ws, "done")
        scheduled = next(m for m in messages if m["type"] == "prompt_scheduled")
        chunks = [m for m in messages if m["type"] == "chunk"]
        assert scheduled["chunk"] in (1, 2) and chunks[-1]["index"] == 2
        prompts = {c["index"]: c["prompt"] for c in chunks}
        assert prompts[scheduled["chunk"]] == "a small blue square"
        assert all(prompts[i] == "a large red circle" for i in prompts if i < scheduled["chunk"])
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert "serving from the first of 2 processes" in stderr
