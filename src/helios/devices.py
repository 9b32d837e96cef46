"""Devices: checking that a named one exists here, and host → device copies that never stall the sampling loop."""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a (small) host tensor to ``device`` without waiting for the device's queue to drain.

    A plain ``.to("cuda")`` from pageable memory synchronises the stream after the copy, so every
    timestep, sigma or noise draw sent that way stops the host until the GPU has caught up. With
    ``non_blocking`` the driver stages the pageable bytes before returning (the source may be freed
    at once) and the copy is queued behind the work already launched.
    """
    return tensor.to(device, non_blocking=True)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The device ``name`` names (None: CUDA when there is one, else the CPU), refused with a one-line
    ValueError when it does not exist on this machine."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {str(name)!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device {name}: only cpu and cuda devices are supported")
    return device
