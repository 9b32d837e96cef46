"""The history window's segments and their one input type, shared by generation and training.

The transformer sees the past as three history terms — long, mid and short — each a latent tensor
with its window-relative frame indices (paper §3.2.1, §3.3.1). :class:`HistoryInputs` carries them
(and the noisy chunk's indices) from the window that builds them to the patch embeddings that read
them; nothing repacks them on the way. Indices stay CPU tensors: reading them costs no device sync
and they key the RoPE-table cache.

Window layout (with the First-Frame Anchor, paper §3.2.2): anchor 0, long 1–16, mid 17–18,
newest 19, noisy 20–28 — the same for every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..config import HistorySettings

HISTORY_TERMS = ("short", "mid", "long")
# diffusers' keyword name of each field (HeliosTransformer3DModel.forward).
DIFFUSERS_NAMES = {
    "indices_current": "indices_hidden_states",
    **{f"indices_{term}": f"indices_latents_history_{term}" for term in HISTORY_TERMS},
    **{term: f"latents_history_{term}" for term in HISTORY_TERMS},
}


@dataclass(frozen=True)
class HistoryInputs:
    """Latents (B, C, T, h, w) and frame indices ((T,), (1, T) or (B, T)) of the history terms, plus
    the indices of the noisy chunk; any term may be absent (None)."""

    short: torch.Tensor | None = None
    mid: torch.Tensor | None = None
    long: torch.Tensor | None = None
    indices_short: torch.Tensor | None = None
    indices_mid: torch.Tensor | None = None
    indices_long: torch.Tensor | None = None
    indices_current: torch.Tensor | None = None

    @classmethod
    def from_diffusers(cls, **keywords: torch.Tensor | None) -> HistoryInputs:
        """From diffusers' keyword names (``latents_history_short=…``, ``indices_hidden_states=…``)."""
        by_diffusers_name = {v: k for k, v in DIFFUSERS_NAMES.items()}
        return cls(**{by_diffusers_name[name]: value for name, value in keywords.items()})

    def diffusers_kwargs(self) -> dict[str, torch.Tensor | None]:
        return {DIFFUSERS_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}

    def named_tensors(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def has_history(self) -> bool:
        return self.short is not None

    def validate(self) -> None:
        for name in HISTORY_TERMS:
            latents, indices = getattr(self, name), getattr(self, f"indices_{name}")
            if (latents is None) != (indices is None):
                given, missing = ("latents", "indices") if indices is None else ("indices", "latents")
                raise ValueError(f"history '{name}': {given} given without {missing}")
            if latents is not None and latents.ndim != 5:
                raise ValueError(f"latents_history_{name} must be (B, C, T, H, W), got shape {tuple(latents.shape)}")
            if indices is not None and indices.shape[-1] != latents.shape[2]:
                raise ValueError(
                    f"indices_latents_history_{name} has {indices.shape[-1]} entries for {latents.shape[2]} frames"
                )
        if self.short is None and (self.mid is not None or self.long is not None):
            raise ValueError("mid/long history needs the short history: their positions use its token grid")

    def to(self, device: torch.device, dtype: torch.dtype) -> HistoryInputs:
        """Latents to ``device``/``dtype``; indices stay where they are (CPU indices key the RoPE cache)."""
        moved = {
            term: getattr(self, term).to(device=device, dtype=dtype)
            for term in HISTORY_TERMS
            if getattr(self, term) is not None
        }
        return replace(self, **moved)

    def _per_sample(self) -> list[str]:
        """The fields whose first axis is the batch: the latents, and indices given per sample (B, T)."""
        indices = ("indices_short", "indices_mid", "indices_long", "indices_current")
        return [term for term in HISTORY_TERMS if getattr(self, term) is not None] + [
            name
            for name in indices
            if getattr(self, name) is not None and getattr(self, name).ndim == 2 and getattr(self, name).shape[0] > 1
        ]

    def expand(self, batch: int) -> HistoryInputs:
        """The history for ``batch`` samples, a whole multiple of its own batch (batched CFG: one history
        serves both halves): a view of a one-sample history, the batch repeated otherwise."""
        return replace(self, **{name: _grow(getattr(self, name), batch) for name in self._per_sample()})

    def rows(self, rows: slice) -> HistoryInputs:
        """The history of samples ``rows`` (a one-sample history serves every row and stays)."""
        fields = [name for name in self._per_sample() if getattr(self, name).shape[0] > 1]
        return replace(self, **{name: getattr(self, name)[rows] for name in fields})


def _grow(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] == 1:
        return tensor.expand(batch, *tensor.shape[1:])
    return tensor.repeat(batch // tensor.shape[0], *[1] * (tensor.ndim - 1))


def window_split(settings: HistorySettings) -> tuple[int, int, int]:
    """Frames of the long, mid and short-newest parts of the window."""
    long, mid, newest = settings.sizes
    # Without an anchor the short part holds the two newest frames.
    return (long, mid, newest if settings.keep_first_frame else newest + 1)


def window_frames(settings: HistorySettings) -> int:
    """Latent frames of history the window reads (the anchor not counted)."""
    return sum(window_split(settings))


def window_indices(settings: HistorySettings) -> HistoryInputs:
    """The fixed, window-relative RoPE frame indices (paper §3.2.1), as (1, n) CPU rows."""
    chunk = settings.chunk_latent_frames
    long, mid, newest = window_split(settings)
    total = long + mid + newest
    if settings.keep_first_frame:
        prefix, long_i, mid_i, newest_i, current = torch.arange(1 + total + chunk).split([1, long, mid, newest, chunk])
        short = torch.cat([prefix, newest_i])
    else:
        long_i, mid_i, short, current = torch.arange(total + chunk).split([long, mid, newest, chunk])
    return HistoryInputs(
        indices_short=short[None], indices_mid=mid_i[None], indices_long=long_i[None], indices_current=current[None]
    )


def window_history(
    window: torch.Tensor, anchor: torch.Tensor | None, settings: HistorySettings, dtype: torch.dtype
) -> HistoryInputs:
    """The transformer's history from the newest window frames (B, C, ≥n, h, w) and the anchor
    (B, C, 1, h, w; None = zeros). Used by inference and training alike."""
    split = window_split(settings)
    long, mid, newest = window[:, :, -sum(split) :].split(split, dim=2)
    if settings.keep_first_frame:
        prefix = anchor if anchor is not None else torch.zeros_like(newest[:, :, :1])
        short = torch.cat([prefix.to(newest.dtype), newest], dim=2)
    else:
        short = newest
    return replace(window_indices(settings), short=short.to(dtype), mid=mid.to(dtype), long=long.to(dtype))
