"""Ulysses context parallelism: two gloo processes on the CPU give the single-process output, and
their weight gradients sum to the single-process ones."""

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


def test_ulysses_matches_one_process():
    result = torchrun(["-m", "tests.parallel.cp_worker"])
    assert result.returncode == 0, result.stderr[-3000:]
    cases = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(cases) == 3
    for case in cases:
        assert case["output"] < 1e-5, case
        assert case["grad"] < 1e-4, case
        assert case["same_on_ranks"], case
        whole, local = case["tokens"]
        assert local in (whole // 2, (whole + 1) // 2) and local < whole, case  # the sequence was split


def test_a_head_count_not_divisible_by_the_ranks_is_refused():
    from helios.parallel.context import check_heads

    check_heads(40, 8)
    with pytest.raises(ValueError, match="40 heads cannot be split over 3 ranks"):
        check_heads(40, 3)
