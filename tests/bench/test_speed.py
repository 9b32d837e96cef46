"""The speed benchmark runs end to end (tiny components on CPU) and reports every defined figure."""

from __future__ import annotations

import json

from helios.bench.speed import run_benchmark


def test_speed_benchmark_with_diffusers_comparison(tmp_path, cpu_cholesky, capsys):
    out = tmp_path / "speed.json"
    results = run_benchmark(
        "tiny",
        "helios-distilled",
        frames=66,
        device="cpu",
        compare="diffusers",
        out=str(out),
        dtype=__import__("torch").float32,
        steps=1,
    )
    printed = capsys.readouterr().out
    assert "end-to-end FPS" in printed and "speed-up over diffusers 0.42.1 [eager] at 1/1/1" in printed
    ours, with_timers, theirs = results
    assert ours.steps == theirs.steps == "1/1/1"
    assert ours.returned_frames == theirs.returned_frames == 65
    assert ours.end_to_end_fps > 0 and theirs.end_to_end_fps > 0
    assert ours.time_to_first_chunk_s is not None and len(ours.chunk_latency_s) == 2
    assert with_timers.transformer_calls == 6 + 3  # amplified first chunk: 2 steps × 3 stages, then 1 × 3
    assert 0 < with_timers.vae_seconds < with_timers.wall_seconds
    data = json.loads(out.read_text())
    assert data["meta"]["card"] == "cpu" and len(data["results"]) == 3


def bench_speed(arguments: str, out) -> dict:
    """``helios bench speed`` through the CLI's entry function; returns the JSON it wrote."""
    from helios.cli import main

    assert main(["bench", "speed", "--size", "tiny", "--device", "cpu", *arguments.split(), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_speed_cli_with_fast_paths(tmp_path):
    data = bench_speed(
        "--dtype fp32 --preset helios-mid --steps 1 --frames 33 --fuse-qkv --batched-cfg --attention math",
        tmp_path / "fast.json",
    )
    assert data["meta"]["fast_paths"]["fuse_qkv"] and data["meta"]["fast_paths"]["batched_cfg"]
    assert "fuse_qkv+batched_cfg+attention=math" in data["results"][0]["implementation"]


def test_speed_cli_with_fp8_overlap_and_offload_on_both_workloads(tmp_path):
    """The FP8 GEMM, the overlapped decode and the block-offload memory mode run end to end, on the
    paper's 1/1/1 workload and the released 2/2/2 one in one process."""
    data = bench_speed(
        "--workload both --frames 33 --fp8 per_row --overlap-vae --vae-channels-last --offload all --no-breakdown",
        tmp_path / "modes.json",
    )
    assert [r["steps"] for r in data["results"]] == ["1/1/1", "2/2/2"] == data["meta"]["steps"]
    assert all(r["returned_frames"] == 33 for r in data["results"])
    assert "overlap_vae+vae_channels_last+offload=all+fp8=per_row" in data["results"][0]["implementation"]


def test_speed_matrix_script_runs_its_steps_in_order(tmp_path, monkeypatch):
    import runpy
    from pathlib import Path

    # the script as its command line runs it, in this process (a new interpreter costs its torch import)
    script = Path(__file__).parents[2] / "benchmarks" / "speed_matrix.py"
    out = tmp_path / "matrix.json"
    steps = "fp8-report ours:fp8=per_row,overlap_vae".split()
    argv = [str(script), *"--size tiny --device cpu --frames 33".split(), "--out", str(out), *steps]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    steps = json.loads(out.read_text())["steps"]
    assert [s["step"] for s in steps] == ["fp8-report", "ours:fp8=per_row,overlap_vae"]
    assert 0 < steps[0]["report"]["end_to_end_rel_l2"] < 0.3
    assert steps[1]["result"]["implementation"] == "helios [overlap_vae+fp8=per_row]"
