"""The synthetic world's frozen text encoder: word vectors plus positions, no learned weights.

Captions use a closed vocabulary (``world.vocabulary()``), so a fixed random embedding per word
(seeded, hence identical everywhere) and a sinusoidal position code carry all the information; the
transformer's own text projection learns to read them. Implements the ``TextEncoder`` protocol.
"""

from __future__ import annotations

import math
import re

import torch

from ..encoders.text import clean_prompt
from .world import vocabulary

PAD, UNK = "<pad>", "<unk>"


class WorldTextEncoder:
    def __init__(self, dim: int = 64, max_length: int = 32, seed: int = 0):
        self.dim, self.max_length = dim, max_length
        self.words = [PAD, UNK, *vocabulary()]
        self.index = {w: i for i, w in enumerate(self.words)}
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(len(self.words), dim, generator=generator)
        self.table[0] = 0
        position = torch.arange(max_length, dtype=torch.float32)[:, None]
        frequency = torch.exp(-math.log(100.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.positions = torch.zeros(max_length, dim)
        self.positions[:, 0::2] = torch.sin(position * frequency)
        self.positions[:, 1::2] = torch.cos(position * frequency)

    def tokenize(self, prompt: str) -> list[int]:
        words = re.findall(r"[a-z]+", clean_prompt(prompt).lower())
        return [self.index.get(w, self.index[UNK]) for w in words][: self.max_length]

    def unknown_words(self, prompt: str) -> list[str]:
        return [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in self.index]

    def encode(self, prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.max_length, self.dim)
        for row, prompt in enumerate(prompts):
            ids = self.tokenize(prompt)
            if ids:
                out[row, : len(ids)] = self.table[ids] + 0.5 * self.positions[: len(ids)]
        return out
