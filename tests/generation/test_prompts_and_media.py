"""Prompt schedule files and media I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helios.generation.prompts import PromptChange, PromptSchedule, read_prompt_file
from helios.media import MediaError, read_image, read_video, write_mp4


def test_json_csv_and_text_schedules(tmp_path):
    (tmp_path / "p.json").write_text(
        json.dumps([{"prompt": "a", "frame": 0}, {"prompt": "b", "frame": 70, "transition": 2}])
    )
    (tmp_path / "p.csv").write_text("prompt,chunk\na,0\nb,2\n")
    (tmp_path / "p.txt").write_text("a\n\nb\n")
    assert read_prompt_file(tmp_path / "p.json", 33) == [PromptChange(0, "a", 3), PromptChange(2, "b", 2)]
    assert read_prompt_file(tmp_path / "p.csv", 33, default_transition=1) == [
        PromptChange(0, "a", 1),
        PromptChange(2, "b", 1),
    ]
    assert read_prompt_file(tmp_path / "p.txt", 33) == [PromptChange(0, "a", 3), PromptChange(1, "b", 3)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "no prompts"),
        ("{broken", "not valid JSON"),
        ('{"prompt": "a"}', "expected a JSON list"),
        ('[{"prompt": "a", "frame": 33}]', "the first prompt must start at frame 0"),
        ('[{"prompt": "a", "frame": 0}, {"prompt": "b", "frame": 0}]', "entry 2 must start after entry 1"),
        ('[{"prompt": "", "frame": 0}]', "entry 1 has no prompt"),
        ('[{"prompt": "a", "frame": 0}, {"prompt": "b"}]', "entry 2 needs a 'frame' or 'chunk'"),
    ],
)
def test_bad_schedule_files(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_prompt_file(path, 33)


def test_mp4_round_trip(tmp_path):
    frames = np.zeros((10, 48, 64, 3), np.uint8)
    frames[:, :, :32] = [200, 30, 30]
    frames[:, :, 32:] = [20, 40, 220]
    path = write_mp4(frames, tmp_path / "v.mp4", fps=24)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == 24
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4


def test_unreadable_media(tmp_path):
    (tmp_path / "not_a_video.mp4").write_bytes(b"hello")
    (tmp_path / "not_an_image.png").write_bytes(b"hello")
    with pytest.raises(MediaError, match="cannot read video .*not_a_video.mp4"):
        read_video(tmp_path / "not_a_video.mp4")
    with pytest.raises(MediaError, match="cannot read image .*not_an_image.png"):
        read_image(tmp_path / "not_an_image.png")
    with pytest.raises(MediaError, match="video not found"):
        read_video(tmp_path / "missing.mp4")


def test_the_same_frames_always_give_the_same_mp4(tmp_path):
    # Regression: two identical `make demo` runs gave MP4s whose pixels differed (libx264's mbtree).
    from helios import HeliosPipeline

    frames = (
        HeliosPipeline.from_pretrained(device="cpu").generate("a red circle moves right", num_frames=66, steps=1).frames
    )
    files = [write_mp4(frames, tmp_path / f"{i}.mp4").read_bytes() for i in range(4)]
    assert all(f == files[0] for f in files)


def test_media_bounds_are_checked_before_decoding(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(MediaError, match="300, more than the 100,000 pixels allowed"):
        read_image(tmp_path / "big.png", max_pixels=100_000)
    reduced = read_image(tmp_path / "big.png", size=(64, 64))  # much larger than needed: reduced while read
    assert reduced.shape == (128, 171, 3)  # 2× the cover size, aspect kept
    frames = np.zeros((40, 48, 64, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(40)[:, None, None] * 5
    write_mp4(frames, tmp_path / "v.mp4")
    with pytest.raises(MediaError, match="more than the 30 frames allowed"):
        read_video(tmp_path / "v.mp4", max_frames=30)
    kept, _ = read_video(tmp_path / "v.mp4", keep_last=10)  # the first frame (the anchor) and the last 10
    assert len(kept) == 11 and abs(int(kept[0, 0, 0, 0]) - 0) < 4 and abs(int(kept[1, 0, 0, 0]) - 150) < 6
    with pytest.raises(MediaError, match="is not a file"):
        read_image(tmp_path)


def _scalar_schedule(changes):
    """A schedule whose 'encoder' maps a prompt to its number: a scalar probe of the embedding."""
    return PromptSchedule(changes, lambda prompts: torch.tensor([[[float(prompts[0])]]]))


def test_overlapping_changes_blend_on_from_the_embedding_in_use(tmp_path):
    # the README's one-prompt-per-line file: a change every chunk, each with the default 3-chunk transition
    path = tmp_path / "prompts.txt"
    path.write_text("0\n10\n20\n30\n")
    schedule = _scalar_schedule(read_prompt_file(path, chunk_frames=33))
    probe = [float(schedule.embedding_for_chunk(k)) for k in range(7)]
    # by hand: chunk k blends 1/3 further from chunk k−1's value toward the newest prompt, and a
    # transition not yet finished goes on from the value its change started at
    e1 = 10 / 3
    e2 = e1 + (20 - e1) / 3
    e3 = e2 + (30 - e2) / 3
    e4 = e2 + (30 - e2) * 2 / 3
    assert probe == pytest.approx([0, e1, e2, e3, e4, 30, 30])
    steps = np.diff(probe)
    assert (steps >= 0).all() and steps.max() <= 30 / 3  # no jump: never more than a transition's share
    mixture = schedule.mixture_for_chunk(2)
    assert sum(mixture.values()) == pytest.approx(1.0) and set(mixture) == {"0", "10", "20"}
    # a hard cut still cuts; a finished transition holds its prompt
    cut = _scalar_schedule([PromptChange(0, "1"), PromptChange(2, "5")])
    assert [float(cut.embedding_for_chunk(k)) for k in range(4)] == [1, 1, 5, 5]
