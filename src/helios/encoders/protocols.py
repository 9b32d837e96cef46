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


def held_image_latent(
    codec: VideoCodec, image: torch.Tensor, chunk_frames: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, C, 1, h, w): the last latent of a still image (B, 3, 1, H, W) held for a chunk of ``chunk_frames``
    frames — what I2V puts in the newest history slot (``generation.history.condition_on_image``), and
    what training and the world's evaluation build to match it."""
    return codec.encode(image.repeat(1, 1, chunk_frames, 1, 1), generator)[:, :, -1:]
