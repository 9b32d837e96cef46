"""Our own Wan2.1 VAE decoder: weight-compatible with diffusers' ``AutoencoderKLWan`` decoder (the same
parameter names: ``post_quant_conv.*``, ``decoder.*``), numerically equal to it, and built for speed.

diffusers decodes a chunk one latent frame at a time (nine passes through the decoder for a 33-frame
chunk), concatenating each causal convolution's two cached frames in front of every pass. The decoder
is causal in time with a receptive field of two frames per convolution, so a whole chunk can go
through each layer at once with two frames of causal context — zeros, or the previous chunk's last
frames (``DecoderState``, the ``carry`` option) — and give the same result: one pad per layer per chunk
instead of nine concatenations, and nine times larger convolutions.

One special case carries over exactly: a temporal upsampling layer leaves the first frame of a decode
as it is (the Wan VAE encodes frame 0 alone: it decodes to one frame, every later latent frame to four)
and its time convolution sees the frames after it, causally zero-padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

CONTEXT = 2  # frames of causal context of a 3-tap time convolution


class CausalConv3d(nn.Conv3d):
    """A 3-D convolution, causal in time: ``context`` frames (zeros when None) stand before the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int], padding=0):
        super().__init__(in_channels, out_channels, kernel)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.time_context = 2 * pt
        self.spatial = (pw, pw, ph, ph)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.time_context:
            if context is None:
                context = x.new_zeros((*x.shape[:2], self.time_context, *x.shape[3:]))
            x = torch.cat([context.to(x.dtype), x], dim=2)
        return super().forward(F.pad(x, self.spatial) if any(self.spatial) else x)


class RMSNorm(nn.Module):
    """L2-normalise over channels, times √C and a per-channel gain (fp32 for 16-bit inputs)."""

    def __init__(self, channels: int, images: bool):
        super().__init__()
        self.scale = channels**0.5
        self.gamma = nn.Parameter(torch.ones(channels, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.normalize(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, dim=1).to(x.dtype)
        return normed * self.scale * self.gamma


@dataclass
class DecoderState:
    """Causal context between chunks (``carry``): each cached convolution's last input frames."""

    context: dict[int, torch.Tensor] = field(default_factory=dict)


class _Cached:
    """Hands each cached convolution its context in a fixed order and records its new last frames."""

    def __init__(self, state: DecoderState | None):
        self.state, self.index, self.new = state, 0, {}

    def conv(self, layer: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
        context = None
        if self.state is not None:  # (without a state nothing is kept: no decode holds its inputs alive)
            context = self.state.context.get(self.index)
            tail = x[:, :, -CONTEXT:]
            if tail.shape[2] < CONTEXT:  # (a one-frame input: the frame before it comes from the context)
                before = context[:, :, -1:] if context is not None else torch.zeros_like(tail)
                tail = torch.cat([before.to(tail.dtype), tail], dim=2)
            self.new[self.index] = tail.clone()  # (a copy: a view would keep the whole input alive)
        self.index += 1
        return layer(x, context)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = RMSNorm(in_dim, images=False)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm(out_dim, images=False)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: _Cached) -> torch.Tensor:
        shortcut = self.conv_shortcut(x)
        x = cache.conv(self.conv1, F.silu(self.norm1(x)))
        x = cache.conv(self.conv2, F.silu(self.norm2(x)))
        return x + shortcut


class AttentionBlock(nn.Module):
    """Single-head self-attention over the positions of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        q, k, v = self.to_qkv(self.norm(frames)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (bt, hw, c) each
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        out = self.proj(out.transpose(1, 2).reshape(b * t, c, h, w))
        return x + out.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)


class MidBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim), ResidualBlock(dim, dim)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x: torch.Tensor, cache: _Cached) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


class _NearestUp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").type_as(x)


class Resample(nn.Module):
    """2× spatial upsampling (nearest, then a 3×3 convolution halving the channels); with ``time`` also
    2× in time first, by a causal time convolution giving two frames per frame."""

    def __init__(self, dim: int, time: bool):
        super().__init__()
        self.resample = nn.Sequential(_NearestUp(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0)) if time else None

    def forward(self, x: torch.Tensor, cache: _Cached, first_frame_kept: bool) -> torch.Tensor:
        if self.time_conv is not None:
            x = self._double_frames(x, cache, first_frame_kept)
        b, c, t, h, w = x.shape
        y = self.resample(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.view(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)

    def _double_frames(self, x: torch.Tensor, cache: _Cached, first_frame_kept: bool) -> torch.Tensor:
        kept, rest = (x[:, :, :1], x[:, :, 1:]) if first_frame_kept else (None, x)
        if rest.shape[2] == 0:  # a lone first frame: nothing to double, no context to keep yet
            cache.index += 1
            return x
        y = cache.conv(self.time_conv, rest)  # (B, 2C, T', h, w): the two output frames of each input frame
        b, c2, t, h, w = y.shape
        y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
        return torch.cat([kept, y], dim=2) if kept is not None else y


class UpBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, blocks: int, upsample: str | None):
        super().__init__()
        dims = [in_dim] + [out_dim] * blocks
        self.resnets = nn.ModuleList([ResidualBlock(a, out_dim) for a in dims])
        self.upsamplers = nn.ModuleList([Resample(out_dim, upsample == "3d")]) if upsample else None

    def forward(self, x: torch.Tensor, cache: _Cached, first_frame_kept: bool) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        return self.upsamplers[0](x, cache, first_frame_kept) if self.upsamplers is not None else x


class Decoder(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_upsample, out_channels: int = 3):
        super().__init__()
        dims = [dim * m for m in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = nn.ModuleList()
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(dim_mult) - 1
            mode = None if last else ("3d" if temporal_upsample[i] else "2d")
            self.up_blocks.append(UpBlock(in_dim // 2 if i > 0 else in_dim, out_dim, num_res_blocks, mode))
        self.norm_out = RMSNorm(dims[-1], images=False)
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, cache: _Cached, first_frame_kept: bool) -> torch.Tensor:
        x = self.mid_block(cache.conv(self.conv_in, z), cache)
        for block in self.up_blocks:
            x = block(x, cache, first_frame_kept)
        return cache.conv(self.conv_out, F.silu(self.norm_out(x)))


class WanDecoder(nn.Module):
    """``post_quant_conv`` + the decoder of a Wan2.1 VAE (``AutoencoderKLWan``'s config and weights)."""

    def __init__(
        self,
        base_dim: int = 96,
        z_dim: int = 16,
        dim_mult=(1, 2, 4, 4),
        num_res_blocks: int = 2,
        temperal_downsample=(False, True, True),
        decoder_base_dim: int | None = None,
        out_channels: int = 3,
    ):
        super().__init__()
        self.post_quant_conv = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder(
            decoder_base_dim or base_dim,
            z_dim,
            list(dim_mult),
            num_res_blocks,
            list(temperal_downsample)[::-1],
            out_channels,
        )

    @classmethod
    def from_vae(cls, vae: nn.Module) -> WanDecoder:
        """The decoder half of a diffusers ``AutoencoderKLWan``, sharing its weight tensors."""
        config = vae.config
        if config.get("is_residual") or config.get("patch_size") or config.get("attn_scales"):
            raise ValueError(
                "only the Wan2.1 VAE layout is supported (no residual blocks, patches or attention scales)"
            )
        decoder = cls(
            config.base_dim,
            config.z_dim,
            config.dim_mult,
            config.num_res_blocks,
            config.temperal_downsample,
            config.get("decoder_base_dim"),
            config.get("out_channels", 3),
        )
        # The VAE's own Parameter objects: no second copy, and a later change of their layout or dtype
        # (channels_last, to()) reaches this decoder too.
        weights = {k: v for k, v in vae.named_parameters() if k.startswith(("decoder.", "post_quant_conv."))}
        decoder.load_state_dict(weights, strict=True, assign=True)
        return decoder.eval()

    @torch.no_grad()
    def forward(
        self, z: torch.Tensor, state: DecoderState | None = None, first_frame_alone: bool = True
    ) -> torch.Tensor:
        """Latents (B, z_dim, T, h, w) → video (B, 3, 1 + 4(T − 1), 8h, 8w) in [−1, 1].

        ``first_frame_alone``: latent frame 0 stands for one video frame (every Helios chunk is encoded
        on its own, so each starts so); False for a piece that continues a sequence (4T frames).
        ``state``: causal context from the previous call is used and this call's is kept (decoding
        chunk after chunk with their temporal context carried over); None: zeros, as diffusers."""
        cache = _Cached(state)
        out = self.decoder(self.post_quant_conv(z), cache, first_frame_kept=first_frame_alone)
        if state is not None:
            state.context = cache.new
        return out.clamp(-1.0, 1.0)
