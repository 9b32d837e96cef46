"""The synthetic world's frozen text encoder: word vectors plus positions, no learned weights.

Captions use a closed vocabulary, stored with the model (``text_encoder.json``), so a fixed random
embedding per word (seeded, hence identical everywhere) and a sinusoidal position code carry all
the information; the transformer's own text projection learns to read them. Implements the
``TextEncoder`` protocol.

Binding (``binding=True``): word vectors plus positions still let a model confuse "a red circle and a
blue square" with "a blue circle and a red square" unless it learns which slot belongs to which object.
A binding encoder adds to every word the summary of its phrase (the words between the separators
"and" / "on"), so each token of an object's phrase carries all of that object's attributes: attending to
any of them reads one object whole.
"""

from __future__ import annotations

import math
import re

import torch

from .text import clean_prompt

PAD, UNK = "<pad>", "<unk>"
SEPARATORS = ("and", "on")  # words that end an object's phrase


class WorldTextEncoder:
    """``vocabulary``: the known words in a fixed order (the order seeds each word's vector)."""

    def __init__(
        self, vocabulary: list[str], dim: int = 64, max_length: int = 32, seed: int = 0, binding: bool = False
    ):
        if (
            not vocabulary
            or not all(isinstance(w, str) and w for w in vocabulary)
            or len(set(vocabulary)) != len(vocabulary)
        ):
            raise ValueError("a world text encoder needs a list of distinct, non-empty words")
        self.dim, self.max_length, self.seed, self.binding = dim, max_length, seed, bool(binding)
        self.vocabulary = list(vocabulary)
        self.words = [PAD, UNK, *self.vocabulary]
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
                if self.binding:
                    out[row, : len(ids)] += self.phrase_summaries(ids)
        return out

    def phrase_summaries(self, ids: list[int]) -> torch.Tensor:
        """(len(ids), dim): for every word, the normalised sum of the word vectors of its phrase."""
        separators = {self.index[w] for w in SEPARATORS if w in self.index}
        summaries = torch.zeros(len(ids), self.dim)
        start = 0
        for end in range(len(ids) + 1):
            if end == len(ids) or ids[end] in separators:
                if end > start:
                    phrase = self.table[ids[start:end]]
                    summaries[start:end] = phrase.sum(0) / math.sqrt(end - start)
                start = end + 1
        return summaries

    def settings(self) -> dict:
        """What ``text_encoder.json`` stores: enough to rebuild the identical encoder."""
        return {
            "dim": self.dim,
            "max_length": self.max_length,
            "seed": self.seed,
            "binding": self.binding,
            "vocabulary": self.vocabulary,
        }
