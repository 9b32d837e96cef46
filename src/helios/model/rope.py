"""Relative 3-D rotary position embedding (paper §3.2.1).

Each axis (t, y, x) owns ``rope_dim[i]`` channels of a head, rotated in interleaved pairs.
Frame positions come from window-relative indices that are the same for every chunk, so a
video of any length never leaves the trained position range.

Tables are kept compact: one cos and one sin value per channel *pair*, shape ``(Bi, L, dh/2)``.
The released code stores every value twice (once per pair member); the pair members are always
equal, also after the average pooling of the compressed history parts, so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RopeTable:
    """cos/sin per (token, channel pair): ``(Bi, L, dh/2)`` fp32, Bi = 1 or the batch size."""

    cos: torch.Tensor
    sin: torch.Tensor

    @staticmethod
    def cat(tables: list[RopeTable]) -> RopeTable:
        batch = max(t.cos.shape[0] for t in tables)
        cos = torch.cat([t.cos.expand(batch, -1, -1) for t in tables], dim=1)
        sin = torch.cat([t.sin.expand(batch, -1, -1) for t in tables], dim=1)
        return RopeTable(cos, sin)

    def __len__(self) -> int:
        return self.cos.shape[1]


def axis_frequencies(dim: int, theta: float, device: torch.device) -> torch.Tensor:
    """``theta^(-2i/dim)`` for i < dim/2, fp32."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=device)[: dim // 2] / dim
    return 1.0 / (theta**exponents)


def _grid_positions(size: int, spacing: int, device: torch.device, scale: float = 1.0) -> torch.Tensor:
    """0, 1, … — or, with ``spacing`` s > 1, each cell's centre on a grid s times finer: (i + ½)·s − ½;
    times ``scale`` (``TransformerConfig.rope_spatial_scale``)."""
    positions = torch.arange(size, dtype=torch.float32, device=device)
    positions = positions if spacing == 1 else (positions + 0.5) * spacing - 0.5
    return positions if scale == 1.0 else positions * scale


def _grid_angles(
    frame_indices: torch.Tensor,
    height: int,
    width: int,
    rope_dim: tuple[int, int, int],
    theta: float,
    spacing: int = 1,
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Rotation angles on a (T, height, width) grid: ``(Bi, dh/2, T, height, width)`` fp32."""
    device = frame_indices.device
    positions_t = frame_indices.to(torch.float32)  # (Bi, T)
    bi, frames = positions_t.shape
    positions_y = _grid_positions(height, spacing, device, spatial_scale)
    positions_x = _grid_positions(width, spacing, device, spatial_scale)
    # Autocast off: bf16 cannot hold consecutive integers past 256, positions must stay exact.
    with torch.autocast(device_type=device.type, enabled=False):
        freq_t, freq_y, freq_x = (axis_frequencies(d, theta, device) for d in rope_dim)
        shape = (bi, -1, frames, height, width)
        angle_t = (freq_t[None, :, None] * positions_t[:, None, :])[..., None, None].expand(shape)
        angle_y = (freq_y[:, None] * positions_y[None, :])[None, :, None, :, None].expand(shape)
        angle_x = (freq_x[:, None] * positions_x[None, :])[None, :, None, None, :].expand(shape)
        return torch.cat([angle_t, angle_y, angle_x], dim=1)


def _pad_to_multiple(x: torch.Tensor, multiple: tuple[int, int, int]) -> torch.Tensor:
    """Replicate-pad the last three dims of a 5-D tensor at their ends up to multiples of ``multiple``."""
    pads = []
    for size, m in zip(reversed(x.shape[-3:]), reversed(multiple)):
        pads += [0, (m - size % m) % m]
    if not any(pads):
        return x
    return F.pad(x, pads, mode="replicate")


def rope_table(
    frame_indices: torch.Tensor,
    height: int,
    width: int,
    rope_dim: tuple[int, int, int],
    theta: float,
    pool: int = 1,
    spacing: int = 1,
    spatial_scale: float = 1.0,
) -> RopeTable:
    """The table for tokens of a (T, height, width) grid, flattened t-major then y then x.

    ``spacing > 1`` places the grid's cells at their centres on a grid ``spacing`` times finer (a lower
    pyramid stage aligned with the full-resolution history: ``TransformerConfig.pyramid_rope_alignment``).

    ``pool > 1`` gives the table of a compressed history part (paper §3.3.1): the table is computed
    on the uncompressed grid, replicate-padded to multiples of ``pool`` and the cos and sin *values*
    are averaged over ``pool``³ cells (what the released models were trained with).
    """
    angles = _grid_angles(frame_indices, height, width, rope_dim, theta, spacing, spatial_scale)
    cos, sin = angles.cos(), angles.sin()
    if pool > 1:
        kernel = (pool, pool, pool)
        cos = F.avg_pool3d(_pad_to_multiple(cos, kernel), kernel, stride=kernel)
        sin = F.avg_pool3d(_pad_to_multiple(sin, kernel), kernel, stride=kernel)
    # (Bi, dh/2, T, H, W) -> (Bi, L, dh/2)
    return RopeTable(cos.flatten(2).transpose(1, 2), sin.flatten(2).transpose(1, 2))


def apply_rope(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    """Rotate interleaved channel pairs of ``x`` (B, L, heads, dh); math in fp32, result in x's dtype."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = table.cos.unsqueeze(2)  # (Bi, L, 1, dh/2)
    sin = table.sin.unsqueeze(2)
    rotated_even = even * cos - odd * sin
    rotated_odd = even * sin + odd * cos
    return torch.stack([rotated_even, rotated_odd], dim=-1).flatten(-2).to(x.dtype)


class RopeCache:
    """RoPE tables of one model, cached when the frame indices live on the CPU.

    The window indices are the same for every chunk, so a generation builds its tables once. Reading
    CPU indices costs no device sync; device indices are never cached. Tables made under
    inference mode cannot be saved for a backward pass, so the mode is part of the key.
    """

    def __init__(self, rope_dim: tuple[int, int, int], theta: float, capacity: int = 64, spatial_scale: float = 1.0):
        self.rope_dim, self.theta, self.capacity, self.spatial_scale = rope_dim, theta, capacity, spatial_scale
        self.tables: dict[tuple, RopeTable] = {}

    def table(
        self, indices: torch.Tensor, height: int, width: int, device: torch.device, pool: int = 1, spacing: int = 1
    ) -> RopeTable:
        if indices.device.type != "cpu":
            return rope_table(
                indices.to(device), height, width, self.rope_dim, self.theta, pool, spacing, self.spatial_scale
            )
        key = (
            tuple(indices.shape),
            tuple(indices.flatten().tolist()),
            height,
            width,
            pool,
            spacing,
            str(device),
            torch.is_inference_mode_enabled(),
        )
        table = self.tables.get(key)
        if table is None:
            table = rope_table(
                indices.to(device), height, width, self.rope_dim, self.theta, pool, spacing, self.spatial_scale
            )
            if len(self.tables) >= self.capacity:
                self.tables.clear()
            self.tables[key] = table
        return table
