"""A small video codec with the Wan VAE's geometry, trained on the synthetic world.

1 + 4k frames → 1 + k latents of 16 channels at 1/8 the resolution, causal like the Wan VAE: latent
0 sees only frame 0, latent j the frames 4j−3 … 4j. One 2-D conv network handles every latent
position: the four frames of a group are stacked in channels (frame 0 is repeated four times).
Latents are normalised with per-channel statistics measured after training, as Helios expects.
Optionally the decoder sees the previous latent frame (``temporal_context``) and the last frame it decoded
for the previous group (``previous_frame``), so a group can start where the one before it ended.
Implements the ``VideoCodec`` protocol; folders load and save through the strict checkpoint code
(``model/checkpoint.py``) like the transformer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.checkpoint import PretrainedMixin

GROUP = 4  # temporal factor
FULL_RESOLUTION_TAIL = 3  # the decoder's last layers (block, activation, output conv) run at full resolution


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def _encoder(channels: tuple[int, ...], latent: int) -> nn.Sequential:
    c1, c2, c3 = channels
    return nn.Sequential(
        nn.Conv2d(3 * GROUP, c1, 3, padding=1),
        _ResBlock(c1),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        _ResBlock(c2),
        nn.Conv2d(c2, c3, 4, stride=2, padding=1),
        _ResBlock(c3),
        nn.Conv2d(c3, c3, 4, stride=2, padding=1),
        _ResBlock(c3),
        nn.SiLU(),
        nn.Conv2d(c3, latent, 3, padding=1),
    )


def _decoder(channels: tuple[int, ...], latent: int, context: bool) -> nn.Sequential:
    c1, c2, c3 = channels
    return nn.Sequential(
        nn.Conv2d(2 * latent if context else latent, c3, 3, padding=1),
        _ResBlock(c3),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c3, c3, 3, padding=1),
        _ResBlock(c3),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c3, c2, 3, padding=1),
        _ResBlock(c2),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(c2, c1, 3, padding=1),
        _ResBlock(c1),
        nn.SiLU(),
        nn.Conv2d(c1, 3 * GROUP, 3, padding=1),
    )


class WorldCodec(PretrainedMixin, nn.Module):
    temporal_factor = GROUP
    spatial_factor = 8
    subfolder = "codec"
    kind = "world codec"
    weights_name = "codec.safetensors"

    def __init__(
        self,
        latent_channels: int = 16,
        channels: tuple[int, int, int] = (32, 64, 96),
        decoder_channels: tuple[int, int, int] | None = None,
        temporal_context: bool = False,
        previous_frame: bool = False,
    ):
        """``temporal_context``: each latent frame is decoded together with the one before it, so the
        four frames it stands for can move from where the previous group ended (without it the decoder
        tends to repeat one frame four times: stop-motion). ``previous_frame``: the decoder's full-resolution
        layers also see the last frame decoded for the previous group (zeros before a chunk's first), so
        the frame into each group can join it instead of jumping — a group is decoded after the one before
        it. The encoder is the same either way."""
        super().__init__()
        self.latent_channels = latent_channels
        self.channels = tuple(channels)
        self.decoder_channels = tuple(decoder_channels or channels)
        self.temporal_context = temporal_context
        self.encoder = _encoder(self.channels, latent_channels)
        self.decoder = _decoder(self.decoder_channels, latent_channels, temporal_context)
        self.previous_frame = previous_frame
        if previous_frame:  # starts at zero: the decoder decodes as it did without the input
            self.previous_in = nn.Conv2d(3, self.decoder_channels[0], 3, padding=1)
            nn.init.zeros_(self.previous_in.weight)
            nn.init.zeros_(self.previous_in.bias)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    # ---------------------------------------------------------------- geometry helpers

    @staticmethod
    def _groups(video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1 + 4k, H, W) → (B·(1 + k), 12, H, W): frame 0 repeated, then groups of four."""
        b, c, t, h, w = video.shape
        if (t - 1) % GROUP:
            raise ValueError(f"the codec needs 1 + 4k frames, got {t}")
        first = video[:, :, :1].expand(b, c, GROUP, h, w)
        groups = torch.cat([first, video[:, :, 1:]], dim=2)  # (B, 3, 4(1 + k), H, W)
        groups = groups.reshape(b, c, -1, GROUP, h, w).permute(0, 2, 3, 1, 4, 5)
        return groups.reshape(-1, GROUP * c, h, w)

    @staticmethod
    def _frames(groups: torch.Tensor, batch: int) -> torch.Tensor:
        """Inverse of :meth:`_groups`; the first group contributes its last frame."""
        n, _, h, w = groups.shape
        video = groups.reshape(batch, n // batch, GROUP, 3, h, w).permute(0, 3, 1, 2, 4, 5)
        video = video.reshape(batch, 3, -1, h, w)
        return video[:, :, GROUP - 1 :]

    # ---------------------------------------------------------------- protocol

    @staticmethod
    def _channels_last(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """``network`` on ``x`` with weights and activations channels-last: oneDNN's (and cuDNN's) fast
        convolution layout — the decoder is most of a CPU chunk, and 1.3× faster so. The weights are
        converted once (a loaded checkpoint arrives contiguous)."""
        WorldCodec._weights_channels_last(network)
        return network(x.contiguous(memory_format=torch.channels_last))

    @staticmethod
    def _weights_channels_last(network: nn.Module) -> None:
        first = next(network.parameters())  # a conv weight: every layer is converted together
        if not first.is_contiguous(memory_format=torch.channels_last):
            network.to(memory_format=torch.channels_last)

    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        dtype = self.encoder[0].weight.dtype
        z = self._channels_last(self.encoder, self._groups(video.to(dtype)))  # (B·T', C, h, w)
        return z.reshape(b, -1, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        if self.temporal_context:  # (z_{j−1}, z_j) per latent frame; the first one sees itself (causal)
            previous = torch.cat([latents[:, :, :1], latents[:, :, :-1]], dim=2)
            latents = torch.cat([previous, latents], dim=1)
        by_time = latents.permute(0, 2, 1, 3, 4).to(self.decoder[0].weight.dtype)  # (B, T, C, h, w)
        if self.previous_frame:
            return self._frames(self._decode_in_order(by_time), len(by_time))
        return self._frames(self._channels_last(self.decoder, by_time.flatten(0, 1)), len(by_time))

    def _decode_in_order(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) → (B·T, 12, H, W), group after group, each seeing the previous group's last
        decoded frame."""
        split = len(self.decoder) - FULL_RESOLUTION_TAIL
        head, tail = self.decoder[:split], self.decoder[split:]
        self._weights_channels_last(self.decoder)
        self._weights_channels_last(self.previous_in)
        previous, groups = None, []
        for index in range(latents.shape[1]):
            features = head(latents[:, index].contiguous(memory_format=torch.channels_last))
            if previous is not None:
                features = features + self.previous_in(previous)
            group = tail(features)
            groups.append(group)
            previous = group[:, -3:].clamp(-1, 1)  # channels are frame-major: the group's last frame
        return torch.stack(groups, dim=1).flatten(0, 1)

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels in [−1, 1] → normalised latents (deterministic: ``generator`` is not used)."""
        with torch.no_grad():
            z = self.encode_raw(video.to(self.latent_mean.device))
        shape = (1, -1, 1, 1, 1)
        return (z.float() - self.latent_mean.view(shape)) / self.latent_std.view(shape)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1, 1)
        z = latents.to(self.latent_mean.device).float() * self.latent_std.view(shape) + self.latent_mean.view(shape)
        with torch.no_grad():
            return self.decode_raw(z).float().clamp(-1, 1)

    # ---------------------------------------------------------------- files

    @classmethod
    def build_from_config(cls, data: dict) -> WorldCodec:
        flags = ("temporal_context", "previous_frame")
        unknown = sorted(set(data) - {"latent_channels", "channels", "decoder_channels", *flags})
        if unknown:
            raise ValueError(f"unknown world codec config keys: {', '.join(unknown)}")
        widths = {key: data[key] for key in ("channels", "decoder_channels") if data.get(key) is not None}
        for key, value in widths.items():
            if (
                not isinstance(value, (list, tuple))
                or len(value) != 3
                or not all(isinstance(c, int) and c > 0 for c in value)
            ):
                raise ValueError(f"{key} must be three positive integers, got {value!r}")
        latent = data.get("latent_channels", 16)
        if not isinstance(latent, int) or latent < 1:
            raise ValueError(f"latent_channels must be a positive integer, got {latent!r}")
        for flag in flags:
            if not isinstance(data.get(flag, False), bool):
                raise ValueError(f"{flag} must be true or false, got {data[flag]!r}")
        decoder = tuple(widths["decoder_channels"]) if "decoder_channels" in widths else None
        channels = tuple(widths.get("channels", (32, 64, 96)))
        return cls(latent, channels, decoder, data.get("temporal_context", False), data.get("previous_frame", False))

    def config_json(self) -> dict:
        config = {"latent_channels": self.latent_channels, "channels": list(self.channels)}
        if self.decoder_channels != self.channels or self.temporal_context:
            config |= {"decoder_channels": list(self.decoder_channels), "temporal_context": self.temporal_context}
        if self.previous_frame:  # absent otherwise: every folder saved before the option loads as it did
            config["previous_frame"] = True
        return config

    @staticmethod
    def keeps_fp32(name: str) -> bool:
        return "latent_" in name  # the normalisation statistics are shipped exactly
