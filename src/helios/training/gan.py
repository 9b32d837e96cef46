"""Multi-granularity GAN heads on the fake-score network (paper §3.4.2, Adversarial Post-Training).

Each head reads the hidden states of the noisy chunk's tokens after one transformer block (shallow
blocks see texture, deep blocks layout) plus one head on the network's output, and gives one logit
per sample. The paper hooks blocks 5, 15, 25, 35 of the 40-block 14B model and its final output;
smaller models take the same relative depths.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

PAPER_BLOCKS, PAPER_LAYERS = (5, 15, 25, 35), 40


def gan_block_indices(num_layers: int) -> tuple[int, ...]:
    """The paper's blocks for 40 layers; the same relative depths (rounded, distinct) otherwise."""
    if num_layers == PAPER_LAYERS:
        return PAPER_BLOCKS
    picked = sorted({min(num_layers - 1, round(i * num_layers / PAPER_LAYERS)) for i in PAPER_BLOCKS})
    return tuple(picked)


class GanHead(nn.Module):
    """Features (B, C, F, H, W) → one logit per sample: conv, a strided conv, average pool, linear."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, dim, 3, padding=1),
            nn.GroupNorm(min(32, dim), dim),
            nn.SiLU(),
            nn.Conv3d(dim, dim, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)),
            nn.SiLU(),
        )
        self.out = nn.Linear(dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.body(features.to(self.out.weight.dtype))
        return self.out(hidden.mean(dim=(2, 3, 4))).squeeze(-1)


class DiscriminatorHeads(nn.Module):
    """The heads of one network: hooks capture the chosen blocks' noisy-token states during a forward;
    ``logits`` then reads them (B, heads), the last column from the network's own output."""

    def __init__(self, model: nn.Module, dim: int = 768, blocks: tuple[int, ...] | None = None):
        super().__init__()
        self.blocks = tuple(blocks if blocks is not None else gan_block_indices(len(model.blocks)))
        width = model.config.num_attention_heads * model.config.attention_head_dim
        self.heads = nn.ModuleList([GanHead(width, dim) for _ in self.blocks])
        self.final = GanHead(model.config.out_channels, dim)
        self._features: dict[int, torch.Tensor] = {}
        self._armed = False  # only forwards whose logits are wanted keep their block states
        self._hooks = [model.blocks[index].register_forward_hook(self._capture(index)) for index in self.blocks]

    @contextmanager
    def capturing(self):
        """Keep the hooked blocks' states of the forwards run inside (read them with ``logits``)."""
        self._armed = True
        try:
            yield self
        finally:
            self._armed = False

    def _capture(self, index: int):
        def hook(module, args, output):
            if not self._armed:
                return
            segments = args[4]  # HeliosBlock.forward(x, text, projections, rope, segments)
            frames, height, width = segments.grid
            tokens = output[:, segments.history :]
            self._features[index] = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, frames, height, width)

        return hook

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        """(B, heads + 1) logits of the forward that just produced ``output``."""
        missing = [i for i in self.blocks if i not in self._features]
        if missing:
            raise RuntimeError(f"no features of blocks {missing}: run the network before reading its GAN heads")
        columns = [head(self._features.pop(i)) for head, i in zip(self.heads, self.blocks)]
        columns.append(self.final(output))
        return torch.stack(columns, dim=1)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def crop_window(height: int, width: int, generator: torch.Generator, fraction: float = 0.5) -> tuple[slice, slice]:
    """A random spatial window (H·fraction × W·fraction, even sizes for the 2×2 patches): the
    discriminator sees a window, not the whole frame (paper: H/2 × W/2)."""
    crop_h = max(2, int(height * fraction) // 2 * 2)
    crop_w = max(2, int(width * fraction) // 2 * 2)
    top = int(torch.randint(height - crop_h + 1, (1,), generator=generator))
    left = int(torch.randint(width - crop_w + 1, (1,), generator=generator))
    return slice(top, top + crop_h), slice(left, left + crop_w)
