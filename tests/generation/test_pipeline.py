"""Pipeline behaviour on a tiny real model: streaming, lengths, prompt schedules, live updates,
adaptive sampling and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helios import PromptChange
from helios.config import sampler_preset
from helios.generation import output_frame_count
from helios.generation.drift import DriftMonitor, DriftSettings

from .fixtures import tiny_pipeline

FAST = dict(steps=1)  # one DMD step per stage keeps the CPU tests quick


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline()


def record_text_embeddings(pipeline, monkeypatch):
    """Capture the text embedding of every transformer call."""
    seen = []
    forward = pipeline.transformer.forward

    def spy(hidden_states, timestep, encoder_hidden_states, **kwargs):
        seen.append(encoder_hidden_states.clone())
        return forward(hidden_states, timestep, encoder_hidden_states, **kwargs)

    monkeypatch.setattr(pipeline.transformer, "forward", spy)
    return seen


def test_generate_equals_concatenated_stream(pipeline):
    video = pipeline.generate("a blue square", num_frames=70, seed=4, **FAST)
    chunks = list(pipeline.stream("a blue square", num_frames=70, seed=4, **FAST))
    assert [c.index for c in chunks] == [0, 1, 2]
    assert np.array_equal(video.frames, np.concatenate([c.frames for c in chunks]))
    assert torch.equal(video.latents, torch.cat([c.latents for c in chunks], dim=2))
    assert [c.first_frame for c in chunks] == [0, 33, 66]
    assert all(c.generation_seconds > 0 for c in chunks)
    assert chunks[0].since_start_seconds < chunks[1].since_start_seconds < chunks[2].since_start_seconds


def test_same_seed_same_video_other_seed_other_video(pipeline):
    a = pipeline.generate("x", num_frames=33, seed=1, **FAST)
    b = pipeline.generate("x", num_frames=33, seed=1, **FAST)
    c = pipeline.generate("x", num_frames=33, seed=2, **FAST)
    assert np.array_equal(a.frames, b.frames)
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize(
    "requested, chunks, returned", [(1, 1, 33), (33, 1, 33), (50, 2, 65), (231, 7, 229), (240, 8, 261)]
)
def test_output_length_rule(requested, chunks, returned):
    assert output_frame_count(requested, 33, 4) == returned
    assert returned == (chunks * 33 - 1) // 4 * 4 + 1


@pytest.mark.parametrize("requested", [1, 50, 231])
def test_any_length_works(pipeline, requested):
    video = pipeline.generate("x", num_frames=requested, seed=0, **FAST)
    assert video.frames.shape == (output_frame_count(requested, 33, 4), 64, 64, 3)
    assert video.latents.shape[2] == 9 * len(video.chunks)
    assert video.fps == 24


def test_stream_until_stopped(pipeline):
    stream = pipeline.stream("x", num_frames=None, seed=0, **FAST)
    received = []
    for chunk in stream:
        received.append(chunk.index)
        if chunk.index == 3:
            stream.stop()
    assert received == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="finite num_frames"):
        pipeline.generate("x", num_frames=None)


def test_prompt_schedule_interpolates_and_holds_the_last_prompt(pipeline, monkeypatch):
    text = pipeline.text_encoder
    a, b = text.embedding("first"), text.embedding("second")
    seen = record_text_embeddings(pipeline, monkeypatch)
    schedule = [PromptChange(0, "first"), PromptChange(2, "second", transition=2)]
    video = pipeline.generate(prompts=schedule, num_frames=33 * 5, seed=0, **FAST)
    weights = [(c.prompt, c.prompt_weight) for c in video.chunks]
    assert weights == [("first", 1.0), ("first", 1.0), ("second", 0.5), ("second", 1.0), ("second", 1.0)]
    calls_per_chunk = [6, 3, 3, 3, 3]  # one step per stage; chunk 0 is amplified to two
    starts = np.cumsum([0] + calls_per_chunk)
    per_chunk = [seen[s] for s in starts[:-1]]
    assert torch.equal(per_chunk[0], a) and torch.equal(per_chunk[1], a)
    assert torch.allclose(per_chunk[2], torch.lerp(a, b, 0.5))
    assert torch.equal(per_chunk[3], b) and torch.equal(
        per_chunk[4], b
    )  # past the schedule: last prompt, not the first


def test_live_prompt_update_takes_effect_at_the_next_chunk(pipeline, monkeypatch):
    text = pipeline.text_encoder
    seen = record_text_embeddings(pipeline, monkeypatch)
    stream = pipeline.stream("first", num_frames=33 * 3, seed=0, **FAST)
    prompts = []
    for chunk in stream:
        prompts.append(chunk.prompt)
        if chunk.index == 0:
            assert stream.update_prompt("second", transition=1) == 1
    assert prompts == ["first", "second", "second"]
    assert torch.equal(seen[6], text.embedding("second"))  # the first call of chunk 1


def test_live_changes_that_overlap_a_transition_never_jump(pipeline, monkeypatch):
    text = pipeline.text_encoder
    first, second, third = (text.embedding(p) for p in ("first", "second", "third"))
    seen = record_text_embeddings(pipeline, monkeypatch)
    stream = pipeline.stream("first", num_frames=33 * 4, seed=0, **FAST)
    for chunk in stream:
        if chunk.index == 0:
            assert stream.update_prompt("second", transition=3) == 1
        if chunk.index == 1:  # a third of the way to "second": go on from there toward "third"
            assert stream.update_prompt("third", transition=3) == 2
    in_use = torch.lerp(first, second, 1 / 3)
    starts = np.cumsum([0, 6, 3, 3])  # the first call of chunks 0-3 (chunk 0 amplified)
    assert torch.allclose(seen[starts[1]], in_use)
    assert torch.allclose(seen[starts[2]], torch.lerp(in_use, third, 1 / 3), atol=1e-6)
    assert torch.allclose(seen[starts[3]], torch.lerp(in_use, third, 2 / 3), atol=1e-6)


def test_cfg_zero_init_skips_the_forwards_it_zeroes(tmp_path):
    pipe = tiny_pipeline(sampler="helios-mid")
    sampler_calls = []
    original = pipe.transformer.forward
    pipe.transformer.forward = lambda *a, **k: sampler_calls.append(1) or original(*a, **k)
    pipe.generate("x", num_frames=33, seed=0, steps=2)
    # Stage 0 steps 0 and 1 are zeroed by CFG-Zero* zero-init: only stages 1 and 2 run, twice (CFG).
    assert len(sampler_calls) == 2 * (2 + 2)


def test_adaptive_sampling_corrupts_history_not_output(pipeline):
    plain = pipeline.generate("x", num_frames=33 * 3, seed=0, **FAST)
    always = DriftSettings(delta_mu=-1.0, delta_sigma=-1.0, corrupt_strength=0.5)
    never = DriftSettings(delta_mu=1e9, delta_sigma=1e9)
    flagged = pipeline.generate("x", num_frames=33 * 3, seed=0, adaptive=always, **FAST)
    quiet = pipeline.generate("x", num_frames=33 * 3, seed=0, adaptive=never, **FAST)
    assert [c.drift for c in flagged.chunks] == [False, True, True]
    assert [c.drift for c in quiet.chunks] == [False, False, False]
    assert torch.equal(quiet.latents, plain.latents)
    # Chunk 1 drifted: its *output* is untouched, only chunk 2 (which reads it as history) changes.
    assert torch.equal(flagged.latents[:, :, :18], plain.latents[:, :, :18])
    assert not torch.allclose(flagged.latents[:, :, 18:], plain.latents[:, :, 18:])


def test_drift_monitor_triggers_on_injected_drift_only():
    monitor = DriftMonitor(DriftSettings())
    generator = torch.Generator().manual_seed(0)
    steady = [torch.randn(1, 16, 9, 32, 32, generator=generator) for _ in range(5)]
    assert [monitor.observe(x) for x in steady] == [False] * 5
    drifted = 1.5 * torch.randn(1, 16, 9, 32, 32, generator=generator) + 0.4
    assert monitor.observe(drifted) is True
    # Shifted mean alone (variance unchanged) is not drift: both conditions are required (eq. 19).
    monitor = DriftMonitor(DriftSettings())
    for x in steady:
        monitor.observe(x)
    assert monitor.observe(steady[0] + 0.4) is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=100), "height 100 must be a positive multiple of 64"),
        (dict(width=0), "width 0 must be a positive multiple of 64"),
        (dict(num_frames=0), "num_frames must be an integer of at least 1"),
        (dict(image=np.zeros((64, 64, 3), np.uint8), video=np.zeros((33, 64, 64, 3), np.uint8)), "either an image"),
        (dict(video=np.zeros((20, 64, 64, 3), np.uint8)), "video-to-video needs at least 33"),
        (dict(image="/nonexistent/picture.png"), "image not found: /nonexistent/picture.png"),
        (dict(image=np.zeros((64, 64, 3), np.float32)), "must be uint8"),
        (dict(steps=[1, 1]), "steps needs 3 values"),
        (dict(preset="helios-ultra"), "unknown preset 'helios-ultra'"),
    ],
)
def test_bad_inputs_are_clear_errors(pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline.generate("x", **{"num_frames": 33, **kwargs})


def test_empty_prompt_is_an_error(pipeline):
    with pytest.raises(ValueError, match="prompt is empty"):
        pipeline.generate("   ", num_frames=33)


def test_presets_reproduce_the_released_settings():
    base, mid, distilled = (sampler_preset(n) for n in ("helios-base", "helios-mid", "helios-distilled"))
    assert (base.pyramid_steps, base.steps, base.guidance_scale, base.cfg_zero_star) == (None, 50, 5.0, False)
    assert (mid.pyramid_steps, mid.guidance_scale, mid.cfg_zero_star, mid.zero_init_steps) == (
        (20, 20, 20),
        5.0,
        True,
        1,
    )
    assert (distilled.sampler, distilled.pyramid_steps, distilled.guidance_scale, distilled.amplify_first_chunk) == (
        "dmd",
        (2, 2, 2),
        1.0,
        True,
    )
    assert not distilled.uses_cfg and mid.uses_cfg


def test_skip_first_chunk_re_anchors_on_chunk_one(pipeline):
    plain = pipeline.generate("x", num_frames=33 * 3, seed=0, **FAST)
    skipped = pipeline.generate("x", num_frames=33 * 3, seed=0, skip_first_chunk=True, **FAST)
    # Chunks 0 and 1 are generated identically; chunk 2 sees chunk 1's first latent as its anchor.
    assert torch.equal(skipped.latents[:, :, :18], plain.latents[:, :, :18])
    assert not torch.allclose(skipped.latents[:, :, 18:], plain.latents[:, :, 18:])
    assert len(skipped.frames) == len(plain.frames)  # chunk 0 is still part of the output


def test_batched_cfg_equals_two_forwards(tmp_path):
    pipe = tiny_pipeline(sampler="helios-mid")
    separate = pipe.generate("x", num_frames=66, seed=3, steps=2)
    pipe.batched_cfg = True
    batched = pipe.generate("x", num_frames=66, seed=3, steps=2)
    assert (batched.latents - separate.latents).abs().max().item() < 1e-4


def test_batched_cfg_survives_a_preset_choice(tmp_path):
    # Regression: batched CFG lived in the sampler settings, so choosing a preset dropped it silently.
    from helios.generation.fast_paths import FastPaths

    pipe = tiny_pipeline(sampler="helios-distilled")
    FastPaths(batched_cfg=True).apply(pipe)
    batches = []
    forward = pipe.transformer.forward

    def recording(hidden_states, *args, **kwargs):
        batches.append(hidden_states.shape[0])
        return forward(hidden_states, *args, **kwargs)

    pipe.transformer.forward = recording
    pipe.generate("x", num_frames=33, seed=0, preset="helios-mid", steps=1)
    assert batches and set(batches) == {2}  # every CFG call is one batch of two


def test_video_chunks_are_views_of_the_video(pipeline):
    video = pipeline.generate("x", num_frames=50, seed=0, **FAST)
    assert [len(c.frames) for c in video.chunks] == [33, 32]
    assert np.shares_memory(video.chunks[1].frames, video.frames)
    assert np.array_equal(video.chunks[1].frames, video.frames[33:])


def test_overlapped_decoding_gives_the_same_video(pipeline):
    """Decoding on the worker/side-stream path (generation.overlap) changes when chunks arrive, not what they hold."""
    sequential = pipeline.generate("a blue square", num_frames=70, seed=4, **FAST)
    pipeline.overlap_decode = True
    try:
        overlapped = pipeline.generate("a blue square", num_frames=70, seed=4, **FAST)
    finally:
        pipeline.overlap_decode = False
    assert np.array_equal(sequential.frames, overlapped.frames)
    assert torch.equal(sequential.latents, overlapped.latents)
    assert [c.first_frame for c in overlapped.chunks] == [0, 33, 66]


def test_overlapped_stream_stops_its_worker_when_closed_early(pipeline):
    import threading

    pipeline.overlap_decode = True
    try:
        stream = pipeline.stream("a red circle", num_frames=None, seed=1, **FAST)
        first = next(iter(stream))
        stream._run.close()  # the consumer walks away mid-stream
    finally:
        pipeline.overlap_decode = False
    assert first.index == 0
    assert not any(t.name == "helios-denoise" and t.is_alive() for t in threading.enumerate())


def test_run_ahead_raises_worker_errors_in_the_consumer():
    from helios.generation.overlap import run_ahead

    def produce():
        yield 1
        raise RuntimeError("denoiser failed")

    stopped = []
    results = run_ahead(produce(), lambda x: x * 10, lambda: stopped.append(True))
    assert next(results) == 10
    with pytest.raises(RuntimeError, match="denoiser failed"):
        next(results)
    assert stopped == [True]


def _first_history(pipeline, monkeypatch, **options) -> torch.Tensor:
    """The short history (anchor + newest frames) the first transformer call of a run sees."""
    seen = []
    forward = pipeline.transformer.forward

    def spy(*args, history=None, **kwargs):
        seen.append(history.short.clone())
        return forward(*args, history=history, **kwargs)

    monkeypatch.setattr(pipeline.transformer, "forward", spy)
    pipeline.generate("x", num_frames=33, **FAST, **options)
    monkeypatch.undo()
    return seen[0]


def test_i2v_noise_levels_are_request_options(pipeline, monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    clean = [
        _first_history(pipeline, monkeypatch, image=image, seed=s, image_noise_sigma=0.0, video_noise_sigma=0.0)
        for s in (0, 1)
    ]
    noisy = [_first_history(pipeline, monkeypatch, image=image, seed=s) for s in (0, 1)]
    assert torch.equal(clean[0], clean[1])  # σ = 0: the conditioning is the encoded image, whatever the seed
    assert not torch.equal(noisy[0], noisy[1])  # the model's default σ range noises it per seed
    strong = _first_history(pipeline, monkeypatch, image=image, seed=0, image_noise_sigma=(0.5, 0.6))
    assert (strong - clean[0]).abs().mean() > (noisy[0] - clean[0]).abs().mean()
    with pytest.raises(ValueError, match="image_noise_sigma must be a number in"):
        pipeline.generate("x", image=image, image_noise_sigma=(0.4, 0.2))
    with pytest.raises(ValueError, match="applies to I2V / V2V"):
        pipeline.generate("x", video_noise_sigma=0.2)


def test_a_placed_decoder_gives_the_same_video(pipeline):
    """place_decoder (pipelined inference): the codec and the text encoder move, decoding overlaps the
    next chunk's denoising; the video is unchanged, I2V (the codec encodes the image) included. On a CPU
    both sides are the CPU: what this checks is the path; tests/gpu/test_multi_gpu.py checks two cards."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:40, 10:30] = 200
    plain = [
        pipeline.generate("a blue square", num_frames=40, seed=5, **FAST, **extra) for extra in ({}, {"image": image})
    ]
    try:
        pipeline.place_decoder("cpu")
        assert pipeline.overlap_decode and pipeline.decode_device == torch.device("cpu")
        placed = [
            pipeline.generate("a blue square", num_frames=40, seed=5, **FAST, **extra)
            for extra in ({}, {"image": image})
        ]
    finally:
        pipeline.overlap_decode, pipeline.decode_device = False, None
    for a, b in zip(plain, placed):
        assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
