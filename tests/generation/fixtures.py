"""Tiny real components shared by the generation tests: diffusers' transformer and Wan VAE with
random weights, and a lookup-table text encoder (fixed embeddings per prompt)."""

from __future__ import annotations

import torch

from helios import HeliosPipeline, HeliosTransformer
from helios.config import TINY
from helios.encoders.video import WanVideoCodec
from helios.encoders.world_codec import WorldCodec

from ..conftest import build_reference

TEXT_DIM = 32
TEXT_LENGTH = 16


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()


class TableTextEncoder:
    """A deterministic text encoder for tests: each prompt gets its own random embedding whose
    rows after a prompt-dependent length are zero, like UMT5's padded output."""

    max_length = TEXT_LENGTH
    dim = TEXT_DIM

    def __init__(self):
        self.calls: list[str] = []

    def embedding(self, prompt: str) -> torch.Tensor:
        seed = sum(ord(c) * (i + 1) for i, c in enumerate(prompt)) % (2**31)
        out = torch.randn(1, TEXT_LENGTH, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
        out[:, 3 + len(prompt) % 8 :] = 0
        return out

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.calls.extend(prompts)
        return torch.cat([self.embedding(p) for p in prompts])


def tiny_components(tmp_path, seed: int = 0):
    """(diffusers transformer, our transformer with the same weights, shared tiny VAE)."""
    reference = build_reference(seed=seed)
    reference.save_pretrained(tmp_path / "transformer")
    ours = HeliosTransformer.from_pretrained(tmp_path / "transformer", dtype=torch.float32)
    return reference, ours, tiny_vae(seed)


def cheap_codec(seed: int = 0) -> WorldCodec:
    """A real codec of the Wan geometry (×4 time, ×8 space, 16 channels) that decodes ~20× faster than
    the tiny Wan VAE: the loop tests pay a decode per chunk, and the Wan VAE has parity tests of its own."""
    torch.manual_seed(seed)
    return WorldCodec(latent_channels=16, channels=(8, 8, 8)).eval()


def tiny_pipeline(sampler="helios-distilled", seed: int = 0, codec: str = "cheap", **kwargs) -> HeliosPipeline:
    """Our tiny transformer with random weights, the table text encoder and a codec ("cheap" or "wan")."""
    torch.manual_seed(seed)
    transformer = HeliosTransformer.from_config(TINY).eval()
    video_codec = WanVideoCodec(tiny_vae(seed)) if codec == "wan" else cheap_codec(seed)
    return HeliosPipeline(transformer, TableTextEncoder(), video_codec, sampler=sampler, height=64, width=64, **kwargs)


def float64_block_noise_cholesky(matrix: torch.Tensor, gamma: float = 1 / 3) -> torch.Tensor:
    """Stand-in for diffusers' float32 Cholesky of the singular 4×4 block covariance, which CPU
    LAPACK rejects: factorise (1 + γ)I − γ·11ᵀ + 1e-8·I in float64 (γ = the schedulers' 1/3)."""
    n = matrix.shape[0]
    exact = torch.eye(n, dtype=torch.float64) * (1 + gamma) - torch.full((n, n), gamma, dtype=torch.float64)
    assert torch.allclose(matrix.double(), exact, atol=1e-6), "not the block-noise covariance"
    exact += torch.eye(n, dtype=torch.float64) * 1e-8
    return torch.linalg.cholesky(exact).to(matrix.dtype)


WORDS = (
    "a an the red green blue yellow circle square triangle moves left right up down fast slow on black white background"
).split()


def tiny_tokenizer():
    """A word-level tokenizer in the T5 layout (pad 0, eos 1, unk 2), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_umt5(seed: int = 0):
    """The tiny UMT5 encoder of the speed benchmark's CPU size (its text width is the tiny transformer's)."""
    from transformers import UMT5EncoderModel

    from helios.bench.speed import umt5_config

    torch.manual_seed(seed)
    return UMT5EncoderModel(umt5_config("tiny")).eval()


def tiny_model_folder(root, distilled: bool = True, seed: int = 0):
    """A complete diffusers-layout Helios folder with tiny random weights (what a user downloads, shrunk)."""
    import json

    from diffusers import HeliosDMDScheduler, HeliosScheduler

    root.mkdir(parents=True, exist_ok=True)
    build_reference(seed=seed).save_pretrained(root / "transformer")
    tiny_vae(seed).save_pretrained(root / "vae")
    tiny_umt5(seed).save_pretrained(root / "text_encoder")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    if distilled:
        HeliosDMDScheduler(use_dynamic_shifting=True).save_pretrained(root / "scheduler")
    else:
        HeliosScheduler(stages=3, use_dynamic_shifting=True).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "HeliosPyramidPipeline",
                "_diffusers_version": "0.42.1",
                "is_distilled": distilled,
                "is_cfg_zero_star": not distilled,
                "scheduler": ["diffusers", "HeliosDMDScheduler" if distilled else "HeliosScheduler"],
                "text_encoder": ["transformers", "UMT5EncoderModel"],
                "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
                "transformer": ["diffusers", "HeliosTransformer3DModel"],
                "vae": ["diffusers", "AutoencoderKLWan"],
            }
        )
    )
    return root
