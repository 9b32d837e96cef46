"""Batches (lists of prompts, num_videos_per_prompt, a batched history window) and the diffusers-style
call: generator, prompt_embeds, callback_on_step_end, output types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .fixtures import tiny_pipeline
from .test_pipeline import FAST, record_text_embeddings

PROMPTS = ["a red circle moves right", "a blue square moves left"]


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline()


def test_a_list_of_prompts_times_videos_per_prompt(pipeline, monkeypatch):
    text = pipeline.text_encoder
    seen = record_text_embeddings(pipeline, monkeypatch)
    video = pipeline.generate(PROMPTS, num_videos_per_prompt=2, num_frames=40, seed=3, **FAST)
    assert video.frames.shape == (4, 65, 64, 64, 3) and video.batch_size == 4
    assert video.latents.shape[0] == 4 and len(video.split()) == 4
    a, b = (text.embedding(p)[0] for p in PROMPTS)
    rows = seen[0]
    assert all(torch.equal(rows[i], e) for i, e in enumerate([a, a, b, b]))  # grouped per prompt, in order
    first, second = video.split()[:2]
    assert np.abs(first.frames.astype(int) - second.frames.astype(int)).mean() > 1  # own noise per video
    again = pipeline.generate(PROMPTS, num_videos_per_prompt=2, num_frames=40, seed=3, **FAST)
    assert np.array_equal(again.frames, video.frames)
    with pytest.raises(ValueError, match="batch of 4 videos"):
        video.save("x.mp4")
    assert video.chunks[1].frames.shape == (4, 32, 64, 64, 3)  # chunks of a batch carry the batch axis


def test_batched_cfg_over_a_batch_equals_separate_forwards():
    # the batch's history is tiled for the [cond; uncond] forward: same numbers as two forwards
    separate = tiny_pipeline(sampler="helios-mid").generate(PROMPTS, num_frames=40, seed=1, steps=1)
    together = tiny_pipeline(sampler="helios-mid")
    together.batched_cfg = True
    batched = together.generate(PROMPTS, num_frames=40, seed=1, steps=1)
    assert np.abs(batched.frames.astype(int) - separate.frames.astype(int)).max() <= 1


def test_image_to_video_batch(pipeline):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    video = pipeline.generate(PROMPTS, image=image, num_frames=33, seed=0, **FAST)
    assert video.frames.shape == (2, 33, 64, 64, 3)


def test_diffusers_style_call_output_types_and_options(pipeline):
    uint8 = pipeline(PROMPTS[0], num_frames=33, generator=torch.Generator().manual_seed(5), output_type="uint8", **FAST)
    frames = uint8.frames
    assert frames.shape == (1, 33, 64, 64, 3) and frames.dtype == np.uint8
    # generator= is the seed's generator; prompt_embeds= is the encoded prompt
    assert np.array_equal(pipeline(PROMPTS[0], num_frames=33, seed=5, output_type="uint8", **FAST)[0], frames)
    embeds = pipeline.text_encoder.encode([PROMPTS[0]])
    by_embeds = pipeline(prompt_embeds=embeds, num_frames=33, seed=5, output_type="uint8", **FAST).frames
    assert np.array_equal(by_embeds, frames)
    as_np = pipeline(PROMPTS[0], num_frames=33, seed=5, **FAST).frames  # diffusers' default "np"
    assert as_np.dtype == np.float32 and np.allclose(as_np, frames / 255)
    as_pt = pipeline(PROMPTS[0], num_frames=33, seed=5, output_type="pt", **FAST).frames
    assert as_pt.shape == (1, 33, 3, 64, 64) and torch.allclose(as_pt.permute(0, 1, 3, 4, 2), torch.from_numpy(as_np))
    latents = pipeline(PROMPTS[0], num_frames=33, seed=5, output_type="latent", **FAST).frames
    assert latents.ndim == 5 and latents.shape[0] == 1
    assert torch.equal(latents, pipeline.generate(PROMPTS[0], num_frames=33, seed=5, **FAST).latents)  # undecoded
    with pytest.raises(ValueError, match="3 rows for a batch of 2"):
        pipeline(PROMPTS, negative_prompt_embeds=torch.zeros(3, 5, 32))
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipeline(PROMPTS[0], output_type="pil")
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        pipeline(PROMPTS[0], generator=7)


def test_callback_on_step_end_sees_every_step_and_may_change_the_latents(pipeline):
    steps = []

    def watch(pipe, step, timestep, tensors):
        steps.append((step, tensors["latents"].shape, tensors["prompt_embeds"].shape[0]))
        return {}

    plain = pipeline(PROMPTS[0], num_frames=66, seed=2, output_type="uint8", callback_on_step_end=watch, **FAST)
    assert [s for s, _, _ in steps] == list(range(len(steps))) and len(steps) == 6 + 3  # 1/1/1, chunk 0 amplified
    assert np.array_equal(plain.frames, pipeline(PROMPTS[0], num_frames=66, seed=2, output_type="uint8", **FAST).frames)

    def darken(pipe, step, timestep, tensors):
        return {"latents": tensors["latents"] * 0.5}

    darker = pipeline(PROMPTS[0], num_frames=66, seed=2, output_type="uint8", callback_on_step_end=darken, **FAST)
    assert not np.array_equal(darker.frames, plain.frames)
