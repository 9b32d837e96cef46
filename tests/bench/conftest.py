"""Helpers for the tests of scripts under benchmarks/ (which are scripts, not an importable package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def load_benchmark(name: str):
    """The module of ``benchmarks/NAME.py``, loaded from its file."""
    path = Path(__file__).parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
