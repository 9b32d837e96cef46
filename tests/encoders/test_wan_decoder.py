"""Our Wan2.1 VAE decoder against diffusers' AutoencoderKLWan (the oracle) on identical tiny weights."""

from __future__ import annotations

import pytest
import torch

from helios.encoders.wan_decoder import DecoderState, WanDecoder


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    stats = dict(latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.5, 1.0, 2.0])
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, **stats).eval()
    with torch.no_grad():  # non-trivial norm gains (diffusers initialises them to one)
        for name, parameter in vae.named_parameters():
            if name.endswith("gamma"):
                parameter.uniform_(0.5, 1.5)
    return vae


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_decodes_as_diffusers(vae, frames):
    z = torch.randn(1, 4, frames, 4, 6, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = vae.decode(z, return_dict=False)[0]
    ours = WanDecoder.from_vae(vae)
    got = ours(z)
    assert got.shape == expected.shape == (1, 3, 1 + 4 * (frames - 1), 32, 48)
    assert (got - expected).abs().max().item() < 1e-5


def test_weights_load_strictly_and_bad_layouts_are_refused(vae):
    ours = WanDecoder.from_vae(vae)
    names = {k for k in vae.state_dict() if k.startswith(("decoder.", "post_quant_conv."))}
    assert set(ours.state_dict()) == names  # the same parameter names: a VAE folder's weights load as they are
    assert ours.decoder.conv_in.weight is vae.decoder.conv_in.weight  # shared: the VAE's layout changes reach it
    from diffusers import AutoencoderKLWan

    with pytest.raises(ValueError, match="only the Wan2.1 VAE layout"):
        WanDecoder.from_vae(
            AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, is_residual=True)
        )


def test_carried_context_decodes_a_split_sequence_as_one(vae):
    """A latent sequence decoded whole equals its two pieces decoded with the causal context carried
    (the second piece does not start a video: first_frame_alone=False); without the context it differs."""
    ours = WanDecoder.from_vae(vae)
    z = torch.randn(1, 4, 6, 4, 6, generator=torch.Generator().manual_seed(9))
    whole = ours(z)
    state = DecoderState()
    pieces = torch.cat([ours(z[:, :, :3], state), ours(z[:, :, 3:], state, first_frame_alone=False)], dim=2)
    assert pieces.shape == whole.shape
    assert (pieces - whole).abs().max().item() < 1e-5
    cold = ours(z[:, :, 3:], None, first_frame_alone=False)
    assert (cold - whole[:, :, 9:]).abs().max().item() > 1e-3


def test_a_pipeline_decodes_the_same_video_with_our_decoder():
    """FastPaths(vae_decoder="helios"): the same frames as diffusers' decoder, through the whole pipeline
    (bf16 conversion afterwards keeps the choice)."""
    import numpy as np

    from helios.generation.fast_paths import FastPaths

    from ..generation.fixtures import tiny_pipeline

    pipeline = tiny_pipeline(codec="wan")
    reference = pipeline.generate("a red circle", num_frames=40, seed=1, steps=1)
    FastPaths(vae_decoder="helios").apply(pipeline)
    assert pipeline.codec.own_decoder is not None
    ours = pipeline.generate("a red circle", num_frames=40, seed=1, steps=1)
    assert np.abs(ours.frames.astype(int) - reference.frames.astype(int)).max() <= 1
    assert pipeline.codec.to_dtype(torch.bfloat16).own_decoder is not None
    with pytest.raises(ValueError, match="vae_decoder must be"):
        FastPaths(vae_decoder="mine").apply(pipeline)


def test_compiled_decoder_decodes_as_the_eager_one(vae):
    """``compile_decoder`` (the speed path's ``--vae-compile``) compiles the decoder in use and changes
    nothing in the output (dynamo traced; the eager backend keeps CI fast)."""
    from helios.encoders.video import WanVideoCodec

    codec = WanVideoCodec(vae).use_own_decoder(True)
    z = torch.randn(1, 4, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    eager = codec.decode(z)
    torch._dynamo.reset()
    codec.compile_decoder(backend="eager")
    assert codec.own_decoder._compiled_call_impl is not None
    assert (codec.decode(z) - eager).abs().max().item() < 1e-5


def test_a_stream_can_carry_the_decoders_causal_context_from_chunk_to_chunk():
    """``decoder_carry``: the first chunk decodes as before; every later one starts from the previous
    chunk's last frames — exactly what our decoder gives when fed the stream's latents chunk after chunk
    with one state — and differs from a decode from zeros (the control)."""
    import numpy as np

    from helios.encoders.wan_decoder import DecoderState
    from helios.generation.fast_paths import FastPaths
    from helios.media import to_uint8_frames

    from ..generation.fixtures import tiny_pipeline

    pipeline = tiny_pipeline(codec="wan")
    FastPaths(vae_decoder="helios").apply(pipeline)
    cold = pipeline.generate("a red circle", num_frames=40, seed=1, steps=1)
    carried = pipeline.generate("a red circle", num_frames=40, seed=1, steps=1, decoder_carry=True)
    assert torch.equal(cold.latents, carried.latents) and len(carried.chunks) >= 2
    first = cold.chunks[0].frames.shape[0]
    assert np.array_equal(carried.frames[:first], cold.frames[:first])
    assert not np.array_equal(carried.frames[first:], cold.frames[first:])
    state = DecoderState()
    by_hand = [to_uint8_frames(pipeline.codec.decode(chunk.latents, state)).numpy() for chunk in carried.chunks]
    assert np.array_equal(np.concatenate(by_hand)[: len(carried.frames)], carried.frames)


def test_decoder_carry_is_refused_where_no_decoder_can_carry():
    from helios import HeliosPipeline

    from ..generation.fixtures import tiny_pipeline

    with pytest.raises(ValueError, match="needs our Wan decoder"):
        tiny_pipeline(codec="wan").generate("a red circle", num_frames=40, steps=1, decoder_carry=True)
    with pytest.raises(ValueError, match="decoder_carry needs the Wan VAE; WorldCodec decodes each chunk alone"):
        HeliosPipeline.from_pretrained().stream("a red circle", num_frames=33, decoder_carry=True)
