"""UMT5-XXL text encoding through transformers (paper §3.1; spec: diffusers-reference §6)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch

from ..model.checkpoint import require_safetensors

MAX_LENGTH = 512


def clean_prompt(text: str) -> str:
    """Fix mojibake (ftfy, when installed), unescape HTML twice and fold whitespace, as released."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class UMT5TextEncoder:
    """A transformers UMT5 encoder and its tokenizer behind the :class:`TextEncoder` protocol."""

    def __init__(self, tokenizer, model, max_length: int = MAX_LENGTH, dtype: torch.dtype | None = None):
        self.tokenizer = tokenizer
        self.model = model  # its train/eval mode is the caller's: encode() runs it in eval mode and restores
        self.max_length = max_length
        self.dim = model.config.d_model
        self.dtype = dtype or next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, root: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"):
        from transformers import AutoTokenizer, UMT5EncoderModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # our CLI prints its own progress; keep stderr for errors

        root = Path(root)
        for sub in ("tokenizer", "text_encoder"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(
                    f"{root} has no {sub}/ folder (a Helios model folder needs tokenizer/ and text_encoder/)"
                )
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        require_safetensors(root / "text_encoder")
        # safetensors only, like the transformer: a pickle file can run code when loaded.
        model = UMT5EncoderModel.from_pretrained(root / "text_encoder", torch_dtype=dtype, use_safetensors=True)
        # The released config says tie_word_embeddings=false but only `shared.weight` is stored.
        model.encoder.embed_tokens = model.shared
        return cls(tokenizer, model.to(device).eval(), dtype=dtype)

    def to(self, device: str | torch.device) -> UMT5TextEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def enable_block_offload(self, device: torch.device | str, slots: int = 2):
        """Memory mode: the encoder layers stream from pinned host memory (model/offload.py)."""
        from ..model.offload import offload_model_blocks

        return offload_model_blocks(self.model, "encoder.block", device, slots)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        mask = batch.attention_mask.to(device)
        training = self.model.training
        self.model.eval()  # no dropout in the embeddings
        try:
            hidden = self.model(batch.input_ids.to(device), mask).last_hidden_state.to(self.dtype)
        finally:
            self.model.train(training)
        lengths = mask.gt(0).sum(dim=1)
        keep = torch.arange(self.max_length, device=device)[None, :] < lengths[:, None]
        return hidden * keep[..., None].to(hidden.dtype)
