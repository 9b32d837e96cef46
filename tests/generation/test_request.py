"""One request object and the chunk geometry that comes from the model, not from a literal 33."""

from __future__ import annotations

import json

import pytest

from helios import GenerationRequest
from helios.config import HistorySettings
from helios.generation.prompts import read_prompt_file

from .fixtures import tiny_pipeline


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(), "exactly one of prompt, prompts or prompt_embeds"),
        (dict(prompt="a", prompts=[]), "exactly one of prompt, prompts or prompt_embeds"),
        (dict(prompt="  "), "prompt is empty"),
        (dict(prompt="a", image="x.png", video="y.mp4"), "either an image"),
        (dict(prompt="a", num_frames=0), "at least 1"),
    ],
)
def test_bad_requests_fail_when_built(options, message):
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**options)


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="frame_count"):
        tiny_pipeline().stream("a", frame_count=3)


def test_run_with_a_request_equals_generate_with_options():
    pipeline = tiny_pipeline()
    video = pipeline.generate("a red circle", num_frames=40, seed=2, steps=1)
    chunks = list(pipeline.run(GenerationRequest(prompt="a red circle", num_frames=40, seed=2, steps=(1, 1, 1))))
    assert [len(c.frames) for c in chunks] == [33, 32]
    assert all((c.frames == video.frames[c.first_frame : c.first_frame + len(c.frames)]).all() for c in chunks)


def test_chunk_geometry_comes_from_the_history_settings_and_the_codec(tmp_path):
    released = tiny_pipeline()
    assert released.chunk_frames == 33 and released.chunks_for(34) == 2 and released.output_frames(240) == 261
    short = tiny_pipeline(history=HistorySettings(chunk_latent_frames=5))  # 17-frame chunks
    assert short.chunk_frames == 17 and short.chunks_for(34) == 2 and short.output_frames(20) == 33
    chunks = list(short.stream("a", num_frames=34, seed=0, steps=1))
    assert [len(c.frames) for c in chunks] == [17, 16] and [c.first_frame for c in chunks] == [0, 17]
    schedule = tmp_path / "story.json"
    schedule.write_text(json.dumps([{"prompt": "a", "frame": 0}, {"prompt": "b", "frame": 20}]))
    assert [c.start_chunk for c in read_prompt_file(schedule, short.chunk_frames)] == [0, 1]
    with pytest.raises(ValueError, match="entry 2 must start after entry 1"):  # frame 20 is in chunk 0 of 33
        read_prompt_file(schedule, released.chunk_frames)
