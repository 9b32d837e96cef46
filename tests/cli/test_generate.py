"""``helios generate`` end to end on a tiny model folder: a playable MP4 with the right frame count,
and one clear error line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from helios.media import read_video, write_frames

from ..generation.fixtures import tiny_model_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("cli") / "Helios-Tiny")


# A two-chunk run of the tiny model folder on the CPU.
TINY_RUN = ["--prompt", "a red circle moves right", "--frames", "40"] + (
    "--height 64 --width 64 --steps 1 --dtype fp32 --device cpu".split()
)


def helios(*args, cwd=None):
    """The real entry point in a new interpreter (used where the process itself matters)."""
    return subprocess.run(
        [sys.executable, "-m", "helios.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def helios_here(capsys, *args) -> tuple[int, str, str]:
    """``helios.cli.main`` in this process: the same code without an interpreter start per case."""
    from helios.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_writes_a_playable_mp4_and_frames(model, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    code, stdout, stderr = helios_here(
        capsys, "generate", "--model", model, *TINY_RUN, "--out", out, "--frames-dir", tmp_path / "png"
    )
    assert code == 0, stderr
    frames, fps = read_video(out)
    assert frames.shape == (65, 64, 64, 3) and fps == 24
    assert len(list((tmp_path / "png").glob("frame_*.png"))) == 65
    assert "chunk 2/2" in stderr
    assert "wrote" in stdout and "65 frames" in stdout and "FPS" in stdout


def test_prompt_schedule_file(model, tmp_path, capsys):
    schedule = tmp_path / "prompts.json"
    schedule.write_text(json.dumps([{"prompt": "a red circle", "frame": 0}, {"prompt": "a blue square", "frame": 33}]))
    tiny = ["--height", 64, "--width", 64, "--steps", 1, "--dtype", "fp32", "--device", "cpu"]
    code, _, err = helios_here(
        capsys, "generate", "--model", model, "--prompts", schedule, "--frames", 66, *tiny, "--out", tmp_path / "s.mp4"
    )
    assert code == 0, err
    assert read_video(tmp_path / "s.mp4")[0].shape[0] == 65


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nowhere/model", "--prompt", "x"], "model folder not found: /nowhere/model"),
        (["--prompt", "x", "--height", "100", "--width", "64"], "height 100 must be a positive multiple of 64"),
        (["--prompt", "x", "--image", "/nowhere/image.png"], "--image /nowhere/image.png not found"),
        (["--prompts", "/nowhere/prompts.json"], "prompt file not found"),
        (["--prompt", "x", "--frames", "0"], "num_frames must be an integer of at least 1"),
        (["--prompt", "x", "--image-noise", "0.2"], "--image-noise and --video-noise need --image or --video"),
        (["--prompt", "x", "--video", "v.mp4", "--video-noise", "0.5,0.1"], "--video-noise must be a number in [0, 1]"),
    ],
)
def test_errors_are_one_clear_line(model, tmp_path, capsys, args, message):
    if "--model" not in args:
        args = ["--model", str(model), *args]
    code, _, err = helios_here(
        capsys, "generate", *args, "--device", "cpu", "--dtype", "fp32", "--out", tmp_path / "x.mp4"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helios: error: ") and message in lines[0], err


def test_bad_prompt_file_is_one_clear_line(model, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "a", "frame": 0}, {"prompt": "b", "frame": "soon"}]))
    code, _, err = helios_here(
        capsys, "generate", "--model", model, "--prompts", bad, "--device", "cpu", "--out", tmp_path / "x.mp4"
    )
    assert code == 2
    assert "entry 2 has a non-integer chunk, frame or transition" in err


def test_i2v_knobs_on_the_command_line(model, tmp_path, capsys):
    image = tmp_path / "start.png"
    write_frames(np.full((1, 64, 64, 3), 200, np.uint8), tmp_path / "png")[0].rename(image)
    knobs = ["--image", image, "--image-noise", "0.3,0.4", "--video-noise", "0.2", "--skip-first-chunk"]
    code, _, err = helios_here(capsys, "generate", "--model", model, *TINY_RUN, *knobs, "--out", tmp_path / "i.mp4")
    assert code == 0, err
    assert read_video(tmp_path / "i.mp4")[0].shape[0] == 65


def _tiny_lora(model_folder, path, scale_up: float = 1.0) -> None:
    from helios import HeliosTransformer

    layer = HeliosTransformer.from_pretrained(model_folder / "transformer", dtype=torch.float32).blocks[0].attn1.to_q
    generator = torch.Generator().manual_seed(0)
    down = torch.randn(4, layer.in_features, generator=generator)
    up = torch.randn(layer.out_features, 4, generator=generator) * scale_up
    save_file(
        {
            "diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": up,
        },
        str(path),
    )


def test_lora_files_with_scales_on_the_command_line(model, tmp_path, capsys):
    _tiny_lora(model, tmp_path / "style.safetensors")
    runs = {
        "plain": [],
        "lora": ["--lora", tmp_path / "style.safetensors"],
        "half": ["--lora", f"{tmp_path / 'style.safetensors'}:0.5"],
    }
    frames = {}
    for name, extra in runs.items():
        code, _, err = helios_here(
            capsys, "generate", "--model", model, *TINY_RUN, *extra, "--out", tmp_path / f"{name}.mp4"
        )
        assert code == 0, err
        frames[name] = read_video(tmp_path / f"{name}.mp4")[0].astype(np.int16)
    assert np.abs(frames["lora"] - frames["plain"]).mean() > np.abs(frames["half"] - frames["plain"]).mean() > 0
    code, _, err = helios_here(
        capsys,
        "generate",
        "--model",
        model,
        *TINY_RUN,
        "--lora",
        tmp_path / "nope.safetensors",
        "--out",
        tmp_path / "x.mp4",
    )
    assert code == 2 and "--lora" in err and "not found" in err and len(err.strip().splitlines()) == 1


def test_default_model_needs_no_model_argument(tmp_path):
    """What `make demo` runs, shortened to one chunk of fewer steps."""
    out = tmp_path / "demo.mp4"
    prompt = "a large red circle moves right slowly on a black background"
    result = helios("generate", "--device", "cpu", "--frames", 33, "--out", out, "--prompt", prompt, "--steps", "2,2,2")
    assert result.returncode == 0, result.stderr
    frames, _ = read_video(out)
    assert frames.shape == (33, 128, 192, 3)


def test_generate_with_fast_paths_and_memory_modes(model, tmp_path, capsys):
    """FP8 GEMMs, block offload of the transformer and UMT5, a bf16 channels-last VAE and the
    overlapped decode, switched on from the command line (the GPU figures are in benchmarks/)."""
    out = tmp_path / "fast.mp4"
    fast = "--fp8 per_row --offload all --vae-dtype bf16 --vae-channels-last --overlap-vae".split()
    code, _, err = helios_here(capsys, "generate", "--model", model, *TINY_RUN, "--out", out, *fast)
    assert code == 0, err
    assert read_video(out)[0].shape == (65, 64, 64, 3)


def test_vae_options_on_a_model_without_the_wan_vae_are_one_clear_line(tmp_path, capsys):
    code, _, err = helios_here(
        capsys,
        "generate",
        "--device",
        "cpu",
        "--frames",
        33,
        "--prompt",
        "x",
        "--vae-dtype",
        "bf16",
        "--out",
        tmp_path / "x.mp4",
    )
    assert code == 2
    assert err.strip() == "helios: error: the VAE options apply to the Wan VAE; this model's codec is WorldCodec"


def test_fast_path_combinations_that_cannot_work_are_refused_before_any_change():
    from helios import HeliosPipeline
    from helios.generation.fast_paths import FastPaths

    pipeline = HeliosPipeline.from_pretrained(device="cpu")
    before = {n: p.clone() for n, p in pipeline.transformer.named_parameters()}
    with pytest.raises(ValueError, match="cannot be combined with compile"):
        FastPaths(offload="all", compile=True, fp8="per_row").apply(pipeline)
    with pytest.raises(ValueError, match="VAE options apply to the Wan VAE"):
        FastPaths(fp8="per_row", vae_channels_last=True).apply(pipeline)
    with pytest.raises(ValueError, match="VAE options apply to the Wan VAE"):
        FastPaths(vae_compile=True).apply(pipeline)
    after = dict(pipeline.transformer.named_parameters())
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
