"""Shared fixtures: tiny diffusers oracle models saved to disk, and their inputs."""

from __future__ import annotations

import pytest
import torch

from helios.config import TINY, TransformerConfig


def diffusers_kwargs(config: TransformerConfig) -> dict:
    """Constructor arguments of diffusers' HeliosTransformer3DModel for ``config``."""
    return config.diffusers_kwargs()


def with_own_storage(model):
    """``model`` with every parameter and buffer moved to a fresh PyTorch allocation. diffusers keeps the
    tensors safetensors (0.8) returns, at 8-byte-aligned addresses, and the CPU GEMM's last bits depend on
    alignment; our loader copies (64-byte aligned). Bit-exact comparisons put the oracle on the same
    footing."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = tensor.data.clone()
    return model


def build_reference(config: TransformerConfig = TINY, seed: int = 0):
    """diffusers' transformer with random weights; norm weights perturbed so they are not all ones."""
    from diffusers import HeliosTransformer3DModel

    torch.manual_seed(seed)
    model = HeliosTransformer3DModel(**diffusers_kwargs(config)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "history_key_scale" in name:
                param.add_(0.2 * torch.randn_like(param))
    return model


@pytest.fixture(scope="session")
def tiny_reference_dir(tmp_path_factory):
    """A tiny diffusers Helios transformer saved with diffusers' own save_pretrained."""
    folder = tmp_path_factory.mktemp("tiny_reference")
    build_reference().save_pretrained(folder)
    return folder


def history_inputs(batch: int, height: int, width: int, long_frames: int = 16, generator=None) -> dict:
    """The history keyword arguments with the pipeline's fixed window indices (spec §3)."""

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return {
        "indices_latents_history_short": torch.tensor([[0, 19]]),
        "indices_latents_history_mid": torch.tensor([[17, 18]]),
        "indices_latents_history_long": torch.arange(19 - 2 - long_frames, 17)[None],
        "latents_history_short": randn(batch, 16, 2, height, width),
        "latents_history_mid": randn(batch, 16, 2, height, width),
        "latents_history_long": randn(batch, 16, long_frames, height, width),
    }


@pytest.fixture
def cpu_cholesky(monkeypatch):
    """diffusers factorises the singular 4×4 block-noise covariance in float32, which CPU LAPACK
    rejects; patched here (in tests only) to a float64 factorisation of the same matrix."""
    from .generation.fixtures import float64_block_noise_cholesky

    real = torch.linalg.cholesky

    def patched(matrix, *args, **kwargs):
        if matrix.shape == (4, 4) and matrix.dtype == torch.float32:
            monkeypatch.setattr(torch.linalg, "cholesky", real)
            try:
                return float64_block_noise_cholesky(matrix)
            finally:
                monkeypatch.setattr(torch.linalg, "cholesky", patched)
        return real(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky", patched)
