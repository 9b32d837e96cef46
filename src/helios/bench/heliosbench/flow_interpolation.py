"""Motion smoothness by optical-flow frame interpolation: the metric as the paper states it (RAFT).

The even frames are kept; each odd frame is predicted from its two neighbours by flow: with the flow
F₀₂ from the frame before to the frame after (and F₂₀ back), linear motion puts the middle frame's
pixel x at x − ½F₀₂(x) in the frame before and x − ½F₂₀(x) in the frame after; both are warped there
(bilinear) and averaged. Score = (255 − mean |prediction − frame|) / 255, as the official metric.

The flow comes from torchvision's RAFT (``raft_large`` or ``raft_small``, told apart by their weights)
loaded from a weights file the user gives (a torchvision ``.pth`` state dict, read with
``weights_only=True``, or ``.safetensors``); any other ``flow(a, b)`` can be passed (tests use exact
flows). The official code interpolates with AMT-S instead: numbers are close in kind, not identical.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .weights import read_weights

Flow = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N, 3, H, W) in [0, 255] ×2 → (N, 2, H, W)
PAIRS_PER_CALL = 8


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: output(x) = image(x + flow(x)), bilinear, borders repeated. (N, C, H, W), (N, 2, H, W)."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=flow.dtype, device=flow.device),
        torch.arange(width, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    x = (xs + flow[:, 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def interpolate_middle(before: torch.Tensor, after: torch.Tensor, flow: Flow) -> torch.Tensor:
    """The frames between ``before`` and ``after`` (N, 3, H, W, float 0–255), by flow and linear motion."""
    forward, backward = flow(before, after), flow(after, before)
    return (warp(before, -0.5 * forward) + warp(after, -0.5 * backward)) / 2


def motion_smoothness_flow(frames: np.ndarray, flow: Flow, device: str | torch.device = "cpu") -> float:
    """Flow-interpolation smoothness of uint8 (T, H, W, 3) frames (at least 3)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 3:
        raise ValueError(f"frames must be at least 3 uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    video = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float()
    odd = torch.arange(1, len(video) - 1, 2)
    errors = []
    with torch.no_grad():
        for part in odd.split(PAIRS_PER_CALL):
            predicted = interpolate_middle(video[part - 1], video[part + 1], flow)
            errors.append((predicted - video[part]).abs().mean(dim=(1, 2, 3)))
    return float((255 - torch.cat(errors).mean()) / 255)


def load_raft(path: str | Path, device: str | torch.device = "cpu") -> Flow:
    """torchvision's RAFT from a weights file (or a folder holding one) as a ``Flow``."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.safetensors"), *path.glob("*.pth"), *path.glob("*.pt")])
        if len(files) != 1:
            raise ValueError(f"{path}: expected one RAFT weights file (.safetensors or .pth), found {len(files)}")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"no RAFT weights at {path}")
    try:
        from torchvision.models.optical_flow import raft_large, raft_small
    except (ImportError, RuntimeError) as exc:  # (a torchvision built for another torch fails at import)
        raise ImportError(f"RAFT smoothness needs a torchvision matching this torch ({exc})") from None
    state = read_weights(path, "RAFT weights")
    errors = {}
    for build in (raft_large, raft_small):
        model = build(weights=None)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            errors[build.__name__] = str(exc).splitlines()[0]
            continue
        model = model.eval().to(device)
        return lambda a, b: raft_flow(model, a, b)
    raise ValueError(f"{path.name} holds neither raft_large's nor raft_small's weights: {errors}")


def raft_flow(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, updates: int = 12) -> torch.Tensor:
    """RAFT's final flow from ``a`` to ``b`` (float 0–255): inputs scaled to [−1, 1] and padded
    (replicated edges) to a multiple of 8 and at least 128 — its correlation pyramid needs that —
    the flow cropped back."""
    height, width = a.shape[-2:]
    pad = (0, max(128, width + -width % 8) - width, 0, max(128, height + -height % 8) - height)
    a, b = (F.pad(t / 127.5 - 1, pad, mode="replicate") for t in (a, b))
    return model(a, b, num_flow_updates=updates)[-1][..., :height, :width]
