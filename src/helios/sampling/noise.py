"""All random numbers of one generation, from one generator in the released order."""

from __future__ import annotations

import torch

from ..devices import to_device


class NoiseDraws:
    """Normal and uniform draws from ``generator`` (CPU in the pipelines, so a seed gives the same
    video on every device), copied to ``device`` without a synchronisation."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator = generator
        self.device = device

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return to_device(torch.randn(shape, generator=self.generator, device=self.generator.device), self.device)

    def uniform(self, count: int) -> torch.Tensor:
        return to_device(torch.rand(count, generator=self.generator, device=self.generator.device), self.device)


def device_randn(shape, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise drawn on ``device`` by a generator seeded from ``generator`` (a CPU generator):
    large noise tensors are made where they are used, and a step stays a pure function of its seed."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)
