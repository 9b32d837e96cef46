"""The transformer as a drop-in for diffusers' ``HeliosTransformer3DModel``, following the behaviour
diffusers' own model tests check: construction from config keywords, a dict-like config, loading and
saving keywords, the output type, the fp32 modules and gradient-checkpointing attributes — and our
transformer running inside diffusers' pipelines with bit-identical latents."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helios import HeliosTransformer
from helios.config import TINY

from ..conftest import diffusers_kwargs
from ..generation.fixtures import TableTextEncoder, tiny_components
from ..generation.test_pipeline_parity import diffusers_pipeline, run_diffusers


def test_built_from_diffusers_keywords_with_a_dict_like_config():
    from diffusers import HeliosTransformer3DModel

    keywords = diffusers_kwargs(TINY)
    ours, theirs = HeliosTransformer(**keywords), HeliosTransformer3DModel(**keywords)
    assert ours.config == TINY
    assert {n: p.shape for n, p in ours.state_dict().items()} == {n: p.shape for n, p in theirs.state_dict().items()}
    for key in ("num_layers", "attention_head_dim", "text_dim", "rope_dim"):
        assert key in ours.config
        value, expected = ours.config[key], theirs.config[key]
        assert (tuple(value) == tuple(expected)) if isinstance(value, tuple) else value == expected
    assert ours.config.get("no_such_key", 7) == 7 and dict(ours.config.items())["num_layers"] == 2
    with pytest.raises(KeyError):
        ours.config["no_such_key"]
    with pytest.raises(TypeError, match="not both"):
        HeliosTransformer(TINY, num_layers=3)
    with pytest.raises(ValueError, match="unknown Helios transformer config keys: sample_size"):
        HeliosTransformer(**keywords, sample_size=64)


def test_class_attributes_and_gradient_checkpointing_api():
    from diffusers import HeliosTransformer3DModel

    assert HeliosTransformer._keep_in_fp32_modules == HeliosTransformer3DModel._keep_in_fp32_modules
    assert HeliosTransformer._supports_gradient_checkpointing
    model = HeliosTransformer.from_config(TINY)
    assert not model.is_gradient_checkpointing
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing
    model.disable_gradient_checkpointing()
    assert not model.is_gradient_checkpointing


def test_output_types_follow_return_dict(tiny_reference_dir):
    from diffusers import HeliosTransformer3DModel
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    reference = HeliosTransformer3DModel.from_pretrained(tiny_reference_dir).eval()
    ours = HeliosTransformer.from_pretrained(tiny_reference_dir)
    assert ours.dtype == torch.float32  # diffusers' default
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 16, 9, 6, 10, generator=generator), torch.tensor([500]), torch.randn(1, 20, 32))
    with torch.no_grad():
        expected = reference(*inputs).sample  # diffusers' default: return_dict=True
        output = ours(*inputs, return_dict=True)
        assert isinstance(output, Transformer2DModelOutput)
        assert torch.allclose(output.sample, expected, atol=1e-5) and torch.equal(output[0], output.sample)
        assert torch.equal(ours(*inputs, return_dict=False)[0], output.sample)
        assert torch.equal(ours(*inputs), output.sample)  # ours alone: the tensor
        with ours.cache_context("cond"):
            assert torch.equal(ours(*inputs), output.sample)


def test_loading_and_saving_keywords(tiny_reference_dir, tmp_path):
    from diffusers import HeliosTransformer3DModel

    root = tmp_path / "pipeline"
    HeliosTransformer3DModel.from_pretrained(tiny_reference_dir).save_pretrained(root / "transformer", variant="fp16")
    ours = HeliosTransformer.from_pretrained(
        root, subfolder="transformer", variant="fp16", torch_dtype=torch.float16, low_cpu_mem_usage=True
    )
    assert ours.dtype == torch.float16
    assert ours.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32  # kept in fp32
    ours.save_pretrained(tmp_path / "sharded", max_shard_size="20KB", variant="fp16")
    files = sorted(p.name for p in (tmp_path / "sharded").iterdir())
    assert "diffusion_pytorch_model.safetensors.index.fp16.json" in files
    assert any(name.startswith("diffusion_pytorch_model.fp16-00001-of-") for name in files)
    back = HeliosTransformer3DModel.from_pretrained(tmp_path / "sharded", variant="fp16", torch_dtype=torch.float16)
    theirs = dict(back.state_dict())
    assert all(torch.equal(theirs[n], t) for n, t in ours.state_dict().items())
    with pytest.raises(TypeError, match="unsupported keyword"):
        HeliosTransformer.from_pretrained(root, subfolder="transformer", variant="fp16", cache_dir="/tmp")
    with pytest.raises(TypeError, match="dtype or torch_dtype"):
        HeliosTransformer.from_pretrained(tiny_reference_dir, dtype=torch.float16, torch_dtype=torch.bfloat16)


def test_our_transformer_inside_diffusers_pipeline_gives_identical_latents(tmp_path, cpu_cholesky):
    # the pyramid pipeline with CFG (its "cond" / "uncond" cache contexts) over two chunks (history)
    kind, steps = "mid", 2
    reference, ours, vae = tiny_components(tmp_path)
    embedding = TableTextEncoder().embedding("a red circle moves right")
    expected = run_diffusers(diffusers_pipeline(kind, reference, vae), kind, embedding, embedding, 66, 7, steps)
    got = run_diffusers(diffusers_pipeline(kind, ours, vae), kind, embedding, embedding, 66, 7, steps)
    assert torch.equal(got, expected)


def test_dataclass_replace_still_works_on_the_dict_like_config():
    assert dataclasses.replace(TINY, num_layers=3)["num_layers"] == 3
