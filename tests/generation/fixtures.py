"""Tiny real components shared by the generation tests: diffusers' transformer and Wan VAE with
random weights, and a lookup-table text encoder (fixed embeddings per prompt)."""

from __future__ import annotations

import torch

from helios import HeliosPipeline, HeliosTransformer
from helios.encoders.video import WanVideoCodec

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


def tiny_pipeline(tmp_path, sampler="helios-distilled", seed: int = 0, **kwargs) -> HeliosPipeline:
    _, ours, vae = tiny_components(tmp_path, seed)
    return HeliosPipeline(ours, TableTextEncoder(), WanVideoCodec(vae), sampler=sampler, height=64, width=64, **kwargs)


def float64_block_noise_cholesky(matrix: torch.Tensor, gamma: float = 1 / 3) -> torch.Tensor:
    """Stand-in for diffusers' float32 Cholesky of the singular 4×4 block covariance, which CPU
    LAPACK rejects: factorise (1 + γ)I − γ·11ᵀ + 1e-8·I in float64 (γ = the schedulers' 1/3)."""
    n = matrix.shape[0]
    exact = torch.eye(n, dtype=torch.float64) * (1 + gamma) - torch.full((n, n), gamma, dtype=torch.float64)
    assert torch.allclose(matrix.double(), exact, atol=1e-6), "not the block-noise covariance"
    exact += torch.eye(n, dtype=torch.float64) * 1e-8
    return torch.linalg.cholesky(exact).to(matrix.dtype)
