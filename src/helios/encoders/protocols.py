"""The two interfaces the generation code needs; UMT5/Wan VAE and the synthetic world's own
encoder and codec implement them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TextEncoder(Protocol):
    """Prompts → (B, max_length, dim) embeddings; rows after each prompt's length are zero."""

    max_length: int
    dim: int

    def encode(self, prompts: list[str]) -> torch.Tensor: ...


@runtime_checkable
class VideoCodec(Protocol):
    """Pixels in [−1, 1] (B, 3, T, H, W) ↔ normalised latents (B, C, 1 + (T−1)/tf, H/sf, W/sf).

    Causal in time like the Wan VAE: 1 + 4k frames ↔ 1 + k latents, each call independent.
    """

    latent_channels: int
    temporal_factor: int
    spatial_factor: int

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...
