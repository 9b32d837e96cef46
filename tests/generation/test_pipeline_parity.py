"""Our pipeline against diffusers' HeliosPipeline / HeliosPyramidPipeline: same tiny weights, same
seed, same latents. Both draw their random numbers in the same order from one CPU generator, so no
noise injection is needed; only diffusers' CPU-incompatible Cholesky is patched (see fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helios import HeliosPipeline
from helios.encoders.video import WanVideoCodec

from .fixtures import TableTextEncoder, tiny_components

HEIGHT = WIDTH = 64
TOLERANCE = 1e-4  # float32 through a 2-layer transformer, the samplers and (for I2V/V2V) the VAE


def diffusers_pipeline(kind: str, reference, vae):
    from diffusers import HeliosDMDScheduler, HeliosPyramidPipeline, HeliosScheduler
    from diffusers import HeliosPipeline as DiffusersBase

    if kind == "base":
        scheduler = HeliosScheduler(
            stages=1, scheduler_type="unipc", use_dynamic_shifting=True, time_shift_type="exponential"
        )
        return DiffusersBase(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=reference)
    if kind == "mid":
        # diffusers' CFG-Zero* calls .view() on the transformer output, which its unpatchify leaves
        # non-contiguous for these shapes; hand it a contiguous copy (values unchanged).
        reference.register_forward_hook(lambda module, args, output: tuple(o.contiguous() for o in output))
        scheduler = HeliosScheduler(
            stages=3, scheduler_type="unipc", use_dynamic_shifting=True, time_shift_type="exponential"
        )
        return HeliosPyramidPipeline(None, None, vae, scheduler, reference, is_cfg_zero_star=True, is_distilled=False)
    scheduler = HeliosDMDScheduler(use_dynamic_shifting=True, time_shift_type="linear")
    return HeliosPyramidPipeline(None, None, vae, scheduler, reference, is_cfg_zero_star=False, is_distilled=True)


def run_diffusers(pipe, kind: str, prompt_embeds, negative_embeds, num_frames, seed, steps, **extra):
    generator = torch.Generator().manual_seed(seed)
    kwargs = dict(
        prompt_embeds=prompt_embeds,
        height=HEIGHT,
        width=WIDTH,
        num_frames=num_frames,
        generator=generator,
        output_type="latent",
        **extra,
    )
    if kind == "base":
        kwargs.update(num_inference_steps=steps, guidance_scale=5.0, negative_prompt_embeds=negative_embeds)
    elif kind == "mid":
        kwargs.update(
            pyramid_num_inference_steps_list=[steps] * 3,
            guidance_scale=5.0,
            negative_prompt_embeds=negative_embeds,
            use_zero_init=True,
            zero_steps=1,
        )
    else:
        kwargs.update(pyramid_num_inference_steps_list=[steps] * 3, guidance_scale=1.0, is_amplify_first_chunk=True)
    with torch.no_grad():
        return pipe(**kwargs).frames


PRESETS = {"base": "helios-base", "mid": "helios-mid", "distilled": "helios-distilled"}


@pytest.mark.parametrize("kind, steps", [("base", 3), ("mid", 3), ("distilled", 2)])
def test_t2v_two_chunks_match_diffusers(tmp_path, cpu_cholesky, kind, steps):
    reference, ours, vae = tiny_components(tmp_path)
    text = TableTextEncoder()
    prompt, negative = "a red circle moves right", ""
    expected = run_diffusers(
        diffusers_pipeline(kind, reference, vae), kind, text.embedding(prompt), text.embedding(negative), 66, 7, steps
    )
    pipeline = HeliosPipeline(ours, text, WanVideoCodec(vae), sampler=PRESETS[kind], height=HEIGHT, width=WIDTH)
    video = pipeline.generate(prompt, num_frames=66, seed=7, steps=steps)
    assert video.latents.shape == expected.shape == (1, 16, 18, 8, 8)
    assert (video.latents - expected).abs().max().item() < TOLERANCE
    assert video.frames.shape == (65, HEIGHT, WIDTH, 3) and video.frames.dtype == np.uint8


def test_official_shift_convention_differs_from_diffusers(tmp_path):
    """The per-stage mu setting is real: the 'official' convention changes the result."""
    _, ours, vae = tiny_components(tmp_path)
    pipeline = HeliosPipeline(
        ours, TableTextEncoder(), WanVideoCodec(vae), sampler="helios-distilled", height=HEIGHT, width=WIDTH
    )
    a = pipeline.generate("x", num_frames=33, seed=1).latents
    b = pipeline.generate("x", num_frames=33, seed=1, shift_convention="official").latents
    assert (a - b).abs().max().item() > 1e-4


def test_i2v_matches_diffusers(tmp_path, cpu_cholesky):
    from PIL import Image

    reference, ours, vae = tiny_components(tmp_path)
    text = TableTextEncoder()
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    expected = run_diffusers(
        diffusers_pipeline("distilled", reference, vae),
        "distilled",
        text.embedding("p"),
        None,
        33,
        3,
        2,
        image=Image.fromarray(image),
    )
    pipeline = HeliosPipeline(ours, text, WanVideoCodec(vae), sampler="helios-distilled", height=HEIGHT, width=WIDTH)
    video = pipeline.generate("p", num_frames=33, seed=3, image=image)
    # diffusers returns the fake history frame in front of the generated latents.
    assert (video.latents - expected[:, :, -9:]).abs().max().item() < TOLERANCE


def test_v2v_matches_diffusers(tmp_path, cpu_cholesky):
    from PIL import Image

    reference, ours, vae = tiny_components(tmp_path)
    text = TableTextEncoder()
    clip = np.random.default_rng(1).integers(0, 256, (40, HEIGHT, WIDTH, 3), dtype=np.uint8)
    expected = run_diffusers(
        diffusers_pipeline("distilled", reference, vae),
        "distilled",
        text.embedding("p"),
        None,
        33,
        5,
        2,
        video=[Image.fromarray(f) for f in clip],
    )
    pipeline = HeliosPipeline(ours, text, WanVideoCodec(vae), sampler="helios-distilled", height=HEIGHT, width=WIDTH)
    video = pipeline.generate("p", num_frames=33, seed=5, video=clip)
    assert (video.latents - expected[:, :, -9:]).abs().max().item() < TOLERANCE
