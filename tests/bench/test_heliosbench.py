"""HeliosBench: the official scoring (its worked example), the weight-free metrics on real videos with
known motion, the prompt file, and the synthetic-world analogue end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helios.bench.heliosbench import metrics
from helios.bench.heliosbench.runner import BenchPrompt, read_prompt_csv, score_folder, score_video, video_name
from helios.bench.heliosbench.scoring import rating, throughput_score, weighted_total
from helios.media import read_video, write_mp4

from ..cli.test_generate import helios_here


def test_the_official_worked_example_totals_8_247():
    ratings = dict(aesthetic=9, motion_amplitude=3, motion_smoothness=10, semantic=7, naturalness=8)
    ratings |= dict(drift_aesthetic=8, drift_smoothness=10, drift_semantic=10, drift_naturalness=10)
    assert weighted_total(ratings, long=True) == {"total": 8.247, "complete": True, "missing": []}
    short = weighted_total({k: ratings[k] for k in ("aesthetic", "motion_amplitude", "motion_smoothness")})
    assert not short["complete"] and short["missing"] == ["semantic", "naturalness"]
    assert short["total"] == pytest.approx((9 + 3 + 10) / 3, abs=1e-4)  # the present ones, renormalised


def test_ratings_thresholds_and_the_long_aesthetic_typo():
    assert rating("semantic", 0.30) == 10 and rating("semantic", 0.2999) == 9 and rating("semantic", 0.1) == 1
    assert rating("motion_smoothness", 1.5) == 10  # raw scores are clipped to [0, 1]
    assert rating("drift_smoothness", 0.0) == 10 and rating("drift_smoothness", 0.095) == 1
    assert rating("drift_naturalness", 0.07) == 9
    assert rating("aesthetic", 0.37, long=True) == 3  # fixed: the short table's 0.35 / 0.30
    assert rating("aesthetic", 0.37, long=True, official_typo=True) == 1  # released: 3 and 2 unreachable
    assert [throughput_score(f) for f in (1.0, 3.2, 3.3, 19.53, 31.9, 32.0, 90.0)] == [1, 1, 2, 7, 10, 10, 10]
    with pytest.raises(ValueError, match="unknown HeliosBench metric"):
        rating("beauty", 0.5)


def _squares(offsets_per_frame: list[int], frames: int = 21, jitter: int = 0) -> np.ndarray:
    """Bright 12-px squares on a dark 96×64 video, each moving by its own offset per frame (``jitter``:
    plus a random shake of up to that many pixels each frame — motion that is not smooth)."""
    shake = np.random.default_rng(1).integers(-jitter, jitter + 1, frames) if jitter else np.zeros(frames, int)
    video = np.full((frames, 64, 96, 3), 20, np.uint8)
    for t in range(frames):
        for n, step in enumerate(offsets_per_frame):
            x = 40 + step * t + int(shake[t])
            video[t, 10 + 30 * n : 22 + 30 * n, x : x + 12] = 230
    return video


def test_motion_metrics_on_real_videos_with_known_motion(tmp_path):
    cases = {
        "static": _squares([0]),
        "right": _squares([1]),
        "opposite": _squares([1, -1]),
        "shaky": _squares([1], jitter=3),
    }
    read = {}
    for name, video in cases.items():  # through real MP4 files (native size: the metrics do not care)
        write_mp4(video, tmp_path / f"{name}.mp4", 24)
        read[name] = read_video(tmp_path / f"{name}.mp4")[0]
    assert metrics.at_benchmark_width(read["right"][:2]).shape == (2, 427, 640, 3)  # the official reading size
    amplitude = {n: metrics.motion_amplitude(v) for n, v in read.items()}
    assert amplitude["static"] < 0.01 < amplitude["right"]
    # the official signed mean: opposite motions cancel (the unsigned magnitude sees them)
    assert amplitude["opposite"] < amplitude["right"] / 3
    assert metrics.motion_magnitude(read["opposite"]) > metrics.motion_magnitude(read["right"])
    smooth = {n: metrics.motion_smoothness_linear(v) for n, v in read.items()}
    assert smooth["static"] > smooth["right"] > smooth["shaky"]
    noisy_end = read["right"].copy()
    noisy_end[-8:] = np.random.default_rng(0).integers(0, 255, noisy_end[-8:].shape, dtype=np.uint8)
    assert metrics.drifting(metrics.motion_smoothness_linear, noisy_end) > 0.1
    assert metrics.drifting(metrics.motion_smoothness_linear, read["right"]) < 0.01


def test_scoring_a_folder_of_named_videos(tmp_path):
    prompts = [BenchPrompt("1", "a square", 240), BenchPrompt("181", "a square", 81)]
    write_mp4(_squares([1], frames=40), tmp_path / video_name(prompts[0], 40), 24)  # (cut short: a quick test)
    write_mp4(_squares([1], frames=90), tmp_path / video_name(prompts[1], 90), 24)
    (tmp_path / "notes.mp4").write_bytes(b"not part of the benchmark")  # other names are left alone
    result = score_folder(tmp_path, prompts, width=160)
    assert set(result["sets"]) == {"short", "long"}
    frames = {v["id"]: v["frames"] for v in result["videos"]}
    assert frames == {"1": 40, "181": 81}  # the short set is judged on its first 81 frames
    long = result["sets"]["long"]
    assert set(long["scores"]) == {"motion_amplitude", "motion_smoothness", "drift_smoothness"}
    assert not long["complete"] and "naturalness" in long["missing"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,prompt\n1,a fox\n", "needs the columns id, prompt, duration"),
        ("id,prompt,duration\n1,a fox,long\n", "line 2 has a non-integer duration"),
        ("id,prompt,duration\n1/2,a fox,240\n", "line 2 needs an id"),
        ("id,prompt,duration\n", "no prompts"),
    ],
)
def test_bad_prompt_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "prompts.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_prompt_csv(path)


def test_prompt_file_tiers(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('id,prompt,duration\n1,"a fox, running",240\n2,a cat,1440\n181,a dog,120\n')
    assert [(p.id, p.frames, p.long) for p in read_prompt_csv(path)] == [
        ("1", 240, True),
        ("2", 1440, True),
        ("181", 81, False),
    ]


def test_the_world_analogue_end_to_end_on_the_default_model(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "heliosbench", "--world", "1", "--tiers", "81", "--steps", "1,1,1", "--out", out]
    code, stdout, err = helios_here(capsys, *args, "--device", "cpu")
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())
    short = result["sets"]["short"]
    assert set(short["scores"]) == {"motion_amplitude", "motion_smoothness", "semantic_world"}
    assert 0 <= short["scores"]["semantic_world"] <= 1 and 1 <= short["total"] <= 10
    assert result["throughput"]["frames"] == 81 and 1 <= result["throughput"]["score"] <= 10
    assert "partial total" in stdout and (out / "w1_81_ori81.mp4").is_file()
    code, _, err = helios_here(capsys, *args, "--score-only")  # scoring alone, on the folder
    assert code == 0, err


def test_the_world_semantic_control_fails_where_the_prompt_is_wrong(tmp_path):
    """Ground-truth renders of two held-out scenes, written and read back: against their own prompts the
    world judge scores them near 1; against the next scene's prompt (the control) far lower."""
    from helios.bench.heliosbench.runner import video_name, world_control, world_prompts
    from helios.media import write_mp4
    from helios.synthetic.world import render

    prompts, scenes = world_prompts(2, (81,))
    for prompt in prompts:
        write_mp4(render(scenes[prompt.id], 81), tmp_path / video_name(prompt, 81), 24)
    control = world_control(tmp_path, prompts, scenes)
    assert control["videos"] == 2 and control["own_prompt"] >= 0.9
    assert control["next_scene_prompt"] < control["own_prompt"] - 0.3
    assert world_control(tmp_path, prompts[:1], scenes) is None  # one scene has no other to fail against


def test_scoring_alone_from_the_official_prompt_file(tmp_path, capsys):
    csv_path = tmp_path / "helios_t2v_prompts.csv"
    csv_path.write_text("id,prompt,duration\n181,a square moves right,120\n")
    out = tmp_path / "videos"
    out.mkdir()
    write_mp4(_squares([1], frames=9), out / "181_81_ori9.mp4", 24)  # (short: scored at 640 wide)
    args = ["bench", "heliosbench", "--prompts", csv_path, "--tiers", "81", "--out", out, "--score-only"]
    code, stdout, err = helios_here(capsys, *args)
    assert code == 0, err
    short = json.loads((out / "results.json").read_text())["sets"]["short"]
    assert short["videos"] == 1 and set(short["scores"]) == {"motion_amplitude", "motion_smoothness"}
    code, _, err = helios_here(capsys, "bench", "heliosbench", "--prompts", csv_path, "--tiers", "100", "--score-only")
    assert code == 2 and "not among the benchmark's durations" in err


def _farneback(a, b):
    """OpenCV's Farnebäck flow as a ``Flow`` (a real estimator that needs no weights)."""
    import cv2
    import torch

    def gray(t):
        return cv2.cvtColor(t.permute(1, 2, 0).numpy().astype(np.uint8), cv2.COLOR_RGB2GRAY)

    flows = [cv2.calcOpticalFlowFarneback(gray(x), gray(y), None, 0.5, 3, 15, 3, 5, 1.2, 0) for x, y in zip(a, b)]
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)


def test_flow_interpolation_predicts_moving_frames_that_blending_cannot():
    """The smoothness metric as the paper states it (flow interpolation; RAFT gives the flow in use):
    a square moving 2 px a frame is predicted almost exactly — the linear blend of the fallback is not —
    and the same motion shaken scores lower. The warp itself moves pixels by the flow."""
    import torch

    from helios.bench.heliosbench.flow_interpolation import motion_smoothness_flow, warp

    image = torch.rand(1, 3, 10, 12)
    shift = torch.zeros(1, 2, 10, 12)
    shift[:, 0] = 2
    assert torch.allclose(warp(image, shift)[..., :-2], image[..., 2:], atol=1e-5)
    moving, shaky = _squares([2]), _squares([2], jitter=3)
    flow = {name: motion_smoothness_flow(video, _farneback) for name, video in (("moving", moving), ("shaky", shaky))}
    assert flow["moving"] > 0.999 > metrics.motion_smoothness_linear(moving)
    assert flow["shaky"] < flow["moving"] - 0.005
    scores = score_video(moving, False, None, lambda frames: motion_smoothness_flow(frames, _farneback))
    assert scores["motion_smoothness"] == flow["moving"]  # the benchmark's smoothness slot takes it
    with pytest.raises(ValueError, match="at least 3 uint8"):
        motion_smoothness_flow(moving[:2], _farneback)


def test_raft_weights_missing_or_without_torchvision_is_one_clear_error(tmp_path, capsys):
    from helios.bench.heliosbench.flow_interpolation import load_raft

    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,prompt,duration\n1,a fox,81\n")
    command = ["bench", "heliosbench", "--prompts", prompts, "--score-only", "--out", tmp_path]
    code, _, err = helios_here(capsys, *command, "--raft", tmp_path / "raft.pth")
    assert code == 2 and err.strip() == f"helios: error: no RAFT weights at {tmp_path / 'raft.pth'}"
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # here: the CPU torch has no matching torchvision
        (tmp_path / "raft.pth").write_bytes(b"")
        with pytest.raises(ImportError, match="RAFT smoothness needs a torchvision matching this torch"):
            load_raft(tmp_path)
