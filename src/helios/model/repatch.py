"""A trained transformer re-patched to spatial tokens ``factor`` times narrower (an experiment of ours).

The small world model's 16 × 16-pixel tokens leave its lower pyramid stages 2 × 3 and 4 × 6 tokens
wide, too coarse for a layout or a direction (benchmarks/README.md, issue 12). Re-patching gives a
model with finer tokens that starts from what the trained one knows instead of from scratch:

- every patch convolution (the noisy one and the three history ones) keeps its temporal taps and
  sums its spatial taps ``factor`` by ``factor``: on a picture that is constant over each old patch,
  a new token equals the old token of the patch it lies in;
- the output projection averages the old outputs over those sub-positions;
- RoPE positions are scaled by ``1/factor`` (``rope_spatial_scale``), so a new token sits where the
  old patch it came from sat.

Attention over ``factor²`` copies of a token is attention over the token: were the copies at one
position, the re-patched model would give the trained one's output exactly (tested). At their own
positions, and with history (whose mid and long tokens become finer too), it starts close to the trained
one, and training then teaches it the finer detail.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import TransformerConfig

PATCH_CONVOLUTIONS = ("patch_embedding", "patch_short", "patch_mid", "patch_long")


def repatched_config(config: TransformerConfig, factor: int) -> TransformerConfig:
    """The config with spatial patches ``factor`` times smaller and RoPE positions to match."""
    pt, ph, pw = config.patch_size
    if factor < 2 or ph % factor or pw % factor:
        raise ValueError(f"cannot re-patch the spatial patch {ph}×{pw} by a factor of {factor}")
    return replace(
        config,
        patch_size=(pt, ph // factor, pw // factor),
        rope_spatial_scale=config.rope_spatial_scale / factor,
    )


def _fold_spatial_taps(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """(D, C, kt, kh, kw) → (D, C, kt, kh/f, kw/f): tap s' of the new kernel sums the old taps
    g·(kh/f) + s' over g — the taps at the same place in each of the f × f new patches."""
    d, c, kt, kh, kw = weight.shape
    folded = weight.reshape(d, c, kt, factor, kh // factor, factor, kw // factor)
    return folded.sum(dim=(3, 5))


def _average_sub_positions(tensor: torch.Tensor, config: TransformerConfig, factor: int) -> torch.Tensor:
    """proj_out rows laid out (pt, ph, pw, C) → (pt, ph/f, pw/f, C), averaged over the f × f new
    patches an old patch splits into (weight: rows; bias: entries)."""
    pt, ph, pw = config.patch_size
    rest = tensor.shape[1:]
    grouped = tensor.reshape(pt, factor, ph // factor, factor, pw // factor, config.out_channels, *rest)
    return grouped.mean(dim=(1, 3)).reshape(-1, *rest)


def repatch_state(
    state: dict[str, torch.Tensor], config: TransformerConfig, factor: int
) -> tuple[dict[str, torch.Tensor], TransformerConfig]:
    """The state dict and config of ``config``'s model re-patched by ``factor`` (see the module)."""
    new_config = repatched_config(config, factor)
    converted = dict(state)
    for name in PATCH_CONVOLUTIONS:
        key = f"{name}.weight"
        if key in state:
            converted[key] = _fold_spatial_taps(state[key], factor)
    for key in ("proj_out.weight", "proj_out.bias"):
        converted[key] = _average_sub_positions(state[key], config, factor)
    return converted, new_config
