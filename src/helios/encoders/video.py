"""The Wan2.1 VAE through diffusers' AutoencoderKLWan, with the latent normalisation Helios uses."""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.checkpoint import require_safetensors


class WanVideoCodec:
    """Per-chunk encode/decode with ``z_norm = (z − mean)·(1/std)`` (paper §3.1; official §2.8)."""

    temporal_factor = 4
    spatial_factor = 8

    def __init__(self, vae):
        self.vae = vae.eval()
        config = vae.config
        self.latent_channels = config.z_dim
        shape = (1, config.z_dim, 1, 1, 1)
        dtype = vae.dtype
        self.mean = torch.tensor(config.latents_mean).view(shape).to(dtype)
        # The released pipelines store the reciprocal and divide by it when decoding; kept for exactness.
        self.inverse_std = 1.0 / torch.tensor(config.latents_std).view(shape).to(dtype)

    own_decoder = None  # our WanDecoder (wan_decoder.py) when use_own_decoder() chose it

    def use_own_decoder(self, enabled: bool = True) -> WanVideoCodec:
        """Decode with our streaming decoder (a whole chunk per layer; equal to diffusers' within
        rounding, tests/encoders/test_wan_decoder.py) instead of diffusers' frame-by-frame one."""
        from .wan_decoder import WanDecoder

        self.own_decoder = WanDecoder.from_vae(self.vae) if enabled else None
        return self

    def compile_decoder(self, backend: str = "inductor") -> WanVideoCodec:
        """``torch.compile`` the decoder in use (ours or diffusers'). Every chunk has one shape, so it
        compiles once; ours compiled with channels-last weights is the fastest decode measured
        (benchmarks/vae_decode.py)."""
        (self.own_decoder if self.own_decoder is not None else self.vae.decoder).compile(backend=backend)
        return self

    def to(self, device: str | torch.device) -> WanVideoCodec:
        self.vae.to(device)
        self.mean, self.inverse_std = self.mean.to(device), self.inverse_std.to(device)
        return self

    @classmethod
    def from_pretrained(cls, root: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        from diffusers import AutoencoderKLWan
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()

        folder = Path(root) / "vae"
        if not folder.is_dir():
            raise FileNotFoundError(f"{root} has no vae/ folder")
        require_safetensors(folder)
        # safetensors only, like the transformer: a pickle file can run code when loaded.
        vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True)
        return cls(vae.to(device))

    def channels_last(self, enabled: bool = True) -> WanVideoCodec:
        """Store the 3-D convolution weights channels-last (cuDNN then runs NDHWC kernels: ~10 %
        faster decoding in bf16 on an H100, benchmarks/vae_decode.py). Same results within rounding."""
        layout = torch.channels_last_3d if enabled else torch.contiguous_format
        for param in self.vae.parameters():
            if param.ndim == 5:
                param.data = param.data.contiguous(memory_format=layout)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    def to_dtype(self, dtype: torch.dtype) -> WanVideoCodec:
        """The same VAE in ``dtype`` (its latent statistics follow), e.g. bf16 for faster decoding."""
        if self.vae.dtype == dtype:
            return self
        return WanVideoCodec(self.vae.to(dtype)).use_own_decoder(self.own_decoder is not None)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        video = video.to(self.device, self.vae.dtype)
        latents = self.vae.encode(video).latent_dist.sample(generator=generator)
        return ((latents - self.mean.to(latents.device)) * self.inverse_std.to(latents.device)).float()

    def new_decoder_state(self):
        """Causal context to carry from chunk to chunk (``decode(…, state)``): our decoder only."""
        from .wan_decoder import DecoderState

        self._require_own_decoder()
        return DecoderState()

    def _require_own_decoder(self) -> None:
        if self.own_decoder is None:
            raise ValueError(
                "carrying the decoder's causal context needs our Wan decoder (--vae-decoder helios, "
                "FastPaths(vae_decoder='helios')); diffusers' decoder starts every chunk from zeros"
            )

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, state=None) -> torch.Tensor:
        """``state`` (``new_decoder_state``): each cached convolution starts from the previous chunk's
        last frames instead of zeros, and this chunk's are kept for the next."""
        z = latents.to(self.device, self.vae.dtype) / self.inverse_std.to(self.device) + self.mean.to(self.device)
        if self.own_decoder is not None:
            return self.own_decoder(z, state)
        if state is not None:
            self._require_own_decoder()  # (raises: diffusers' decoder cannot carry)
        return self.vae.decode(z, return_dict=False)[0]
