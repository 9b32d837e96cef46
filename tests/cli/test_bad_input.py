"""The command line's bad-input table: every case is one clear line on stderr and exit code 2, checked
before any generation work where the problem can be known without the model."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from helios.generation.loading import DEFAULT_MODEL_DIR

from ..serve.test_hardening import png_header_only
from .test_generate import helios_here


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Damaged copies of the default model folder and bad input files, made once."""
    root = tmp_path_factory.mktemp("broken")

    def copy(name: str):
        target = root / name
        shutil.copytree(DEFAULT_MODEL_DIR, target)
        return target

    codec = copy("truncated_codec") / "codec" / "codec.safetensors"
    codec.write_bytes(codec.read_bytes()[:1000])
    (copy("config_list") / "transformer" / "config.json").write_text("[1, 2, 3]")
    config = copy("config_words") / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_layers": "eight"}))
    index = copy("no_height") / "model_index.json"
    index.write_text(json.dumps({k: v for k, v in json.loads(index.read_text()).items() if k != "height"}))
    (root / "bomb.png").write_bytes(png_header_only(14000, 14000))
    (root / "a_file").write_text("x")
    (root / "a_dir").mkdir()
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (root / "empty.txt").write_text("\n\n")
    return root


GENERATE = ["generate", "--device", "cpu", "--frames", "33", "--steps", "1"]
CASES = [
    (["--model", "{root}/truncated_codec", "--prompt", "x"], "cannot read"),
    (["--model", "{root}/config_list", "--prompt", "x"], "expected a JSON object"),
    (["--model", "{root}/config_words", "--prompt", "x"], "num_layers = 'eight' is not a valid int"),
    (["--model", "{root}/no_height", "--prompt", "x"], "needs a positive integer height"),
    (["--model", "/nowhere/model", "--prompt", "x"], "model folder not found: /nowhere/model"),
    (["--prompt", "x", "--image", "{root}/bomb.png"], "more than the 16,777,216 pixels allowed"),
    (["--prompt", "x", "--image", "{root}/a_dir"], "is not a file"),
    (["--prompt", "x", "--image", "/nowhere/image.png"], "not found"),
    (["--prompt", "x", "--device", "cuda"], "CUDA is not available"),
    (["--prompt", "x", "--device", "bogus"], "unknown device 'bogus'"),
    (["--prompt", "x", "--out", "{root}/a_file/out.mp4"], "is a file, not a folder"),
    (["--prompt", "x", "--out", "{root}/a_dir"], "is a folder"),
    (["--prompt", "x", "--frames-dir", "{root}/a_file"], "is a file, not a folder"),
    (["--prompt", "x", "--guidance", "nan"], "guidance_scale must be a finite number"),
    (["--prompt", "x", "--seed", str(2**64)], "seed must be an integer from 0 to"),
    (["--prompt", "x", "--seed", "-3"], "seed must be an integer from 0 to"),
    (["--prompt", "x", "--frames", "0"], "num_frames must be an integer of at least 1"),
    (["--prompt", "x", "--steps", "0"], "steps must be whole numbers"),
    (["--prompt", "x", "--height", "100", "--width", "192"], "height 100 must be a positive multiple of 64"),
    (["--prompts", "{root}/latin1.txt"], "latin1.txt"),
    (["--prompts", "{root}/empty.txt"], "no prompts"),
    (["--prompts", "/nowhere/prompts.json"], "prompt file not found"),
    (["--prompt", "   "], "prompt is empty"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[f"generate{i}" for i in range(len(CASES))])
def test_generate_bad_input_is_one_line(broken, tmp_path, capsys, args, message):
    args = [a.format(root=broken) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.mp4")]
    code, out, err = helios_here(capsys, *GENERATE, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("helios: error: "), err
    assert message in lines[0], lines[0]
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "x.mp4").exists()


SERVE = [
    (["--queue", "0"], "queue_size must be at least 1"),
    (["--max-sessions", "0"], "max_sessions must be at least 1"),
    (["--port", "99999"], "--port must be from 1 to 65535"),
    (["--host", "0.0.0.0"], "give --token"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--lora", "/nowhere/style.safetensors:0.5"], "--lora /nowhere/style.safetensors not found"),
]


@pytest.mark.parametrize("args, message", SERVE, ids=[f"serve{i}" for i in range(len(SERVE))])
def test_serve_bad_settings_fail_before_the_model_loads(capsys, args, message):
    started = time.perf_counter()
    code, _, err = helios_here(capsys, "serve", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert time.perf_counter() - started < 5


def test_train_and_offload_bad_input(tmp_path, capsys):
    code, _, err = helios_here(capsys, "train", "--config", tmp_path / "missing.json")
    assert code == 2 and "training config not found" in err
    (tmp_path / "bad.json").write_text(json.dumps({"stage": 1, "learning_rate_typo": 1}))
    code, _, err = helios_here(capsys, "train", "--config", tmp_path / "bad.json")
    assert code == 2 and "unknown training config keys: learning_rate_typo" in err
    code, _, err = helios_here(capsys, "offload", "--manifest", tmp_path / "none.json", "--out", tmp_path / "s")
    assert code == 2 and "none.json" in err and len(err.strip().splitlines()) == 1


def test_words_the_default_model_does_not_know_are_named(tmp_path, capsys):
    code, _, err = helios_here(capsys, *GENERATE, "--prompt", "a red dragon circles", "--out", tmp_path / "x.mp4")
    assert code == 0
    assert "helios: warning: the model does not know 'circles', 'dragon'" in err
