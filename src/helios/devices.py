"""Host → device copies that never stall the sampling loop."""

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
