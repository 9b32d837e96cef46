"""ViCLIP (InternVid), HeliosBench's semantic metric, from the user's weights — nothing is downloaded.

The official checkpoint ``ViClip-InternVid-10M-FLT.pth`` holds ``{"model": state}`` with two towers:

- ``vision_encoder``: a CLIP ViT (L/14 at 224 px: width 1024, 24 layers) whose patch embedding is a
  Conv3d of temporal size 1, with a learned temporal position per frame added to every patch token (not
  to the class token); all frames' patch tokens then attend jointly (space-time attention) behind one
  class token, whose final state, after ``ln_post``, is projected (``proj``) to 768.
- ``text_encoder``: CLIP's causal text transformer (width 768, 12 layers, 32 positions), pooled at the
  end-of-text token (the largest token id) and projected (``text_projection``).

Both use pre-norm blocks with QuickGELU MLPs and packed q/k/v projections (``attn.in_proj_weight``);
heads are 64-dimensional as in CLIP. The architecture sizes are read from the checkpoint's shapes, so the
same code loads tiny test models. Text is tokenised with CLIP's byte-level BPE from the user's
``bpe_simple_vocab_16e6.txt.gz`` (transformers' CLIP tokenizer, built from that file), 32 tokens.

The official score (``eval/3_get_semantic.py``): 8 frames at the middle of 8 equal segments of the video
read 640 wide, each resized (shorter side 224, bicubic, no antialiasing) and centre-cropped, CLIP's
normalisation; the cosine of the L2-normalised video and prompt embeddings. (Its drifting variant samples
each 15 % part at start + i·step; here each part is sampled like a whole video, at segment middles —
half a step later.)
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model_metrics import clip_pixels, middle_samples
from .weights import read_weights

CHECKPOINT = "ViClip-InternVid-10M-FLT.pth"
VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
HEAD_DIM = 64
CONTEXT = 32  # the text tower's positions (the official max_txt_l)
BPE_MERGES = 49152 - 256 - 2  # CLIP's merges: the vocabulary less the bytes and the two special tokens


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class FeedForward(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc, self.c_proj, self.act = nn.Linear(width, 4 * width), nn.Linear(4 * width, width), QuickGELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); inputs (batch, tokens, width)."""

    def __init__(self, width: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, max(1, width // HEAD_DIM), batch_first=True)
        self.mlp = FeedForward(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Blocks(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTower(nn.Module):
    def __init__(self, width: int, layers: int, patch: int, resolution: int, frames: int, output: int):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, frames, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = Blocks(width, layers)
        self.proj = nn.Parameter(torch.zeros(width, output))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalised pixels → (B, output)."""
        x = self.conv1(video)  # (B, D, T, h, w)
        batch, width, frames = x.shape[:3]
        x = x.flatten(3).permute(0, 3, 2, 1)  # (B, patches, T, D)
        x = x + self.positional_embedding[1:, None].to(x.dtype)
        # one learned position per frame; a single frame takes their mean (as the official code)
        temporal = self.temporal_positional_embedding[0]
        x = x + (temporal.mean(0) if frames == 1 else temporal[:frames]).to(x.dtype)
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(batch, 1, width)
        x = torch.cat([cls, x.reshape(batch, -1, width)], dim=1)  # patch-major, frame-minor order
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    def __init__(self, width: int, layers: int, context: int, vocabulary: int, output: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context, width))
        self.transformer = Blocks(width, layers)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, output))
        causal = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, context) token ids → (B, output), read at each row's end-of-text token (its largest id)."""
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.causal_mask.to(x.dtype)))
        return x[torch.arange(len(tokens)), tokens.argmax(-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """The two towers with the official checkpoint's parameter names (``temp``: the training temperature,
    kept so that the state dict loads whole)."""

    def __init__(self, sizes: dict):
        super().__init__()
        v, t = sizes["vision"], sizes["text"]
        self.vision_encoder = VisionTower(
            v["width"], v["layers"], v["patch"], v["resolution"], v["frames"], v["output"]
        )
        self.text_encoder = TextTower(t["width"], t["layers"], t["context"], t["vocabulary"], t["output"])
        self.sizes = sizes
        self.temp = nn.Parameter(torch.tensor(0.01))

    @staticmethod
    def sizes_of(state: dict[str, torch.Tensor]) -> dict:
        """The architecture a state dict describes (heads: CLIP's 64-dimensional ones)."""

        def layers(prefix: str) -> int:
            found = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
            return max(found) + 1 if found else 0

        try:
            conv, positions = state["vision_encoder.conv1.weight"], state["vision_encoder.positional_embedding"]
            patch, grid = conv.shape[-1], round((positions.shape[0] - 1) ** 0.5)
            return {
                "vision": {
                    "width": conv.shape[0],
                    "layers": layers("vision_encoder.transformer.resblocks."),
                    "patch": patch,
                    "resolution": grid * patch,
                    "frames": state["vision_encoder.temporal_positional_embedding"].shape[1],
                    "output": state["vision_encoder.proj"].shape[1],
                },
                "text": {
                    "width": state["text_encoder.token_embedding.weight"].shape[1],
                    "layers": layers("text_encoder.transformer.resblocks."),
                    "context": state["text_encoder.positional_embedding"].shape[0],
                    "vocabulary": state["text_encoder.token_embedding.weight"].shape[0],
                    "output": state["text_encoder.text_projection"].shape[1],
                },
            }
        except KeyError as missing:
            raise ValueError(f"not a ViCLIP checkpoint: it has no {missing.args[0]}") from None

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> ViCLIP:
        model = cls(cls.sizes_of(state))
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"ViCLIP checkpoint keys do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
        wrong = [k for k in expected if expected[k].shape != state[k].shape]
        if wrong:
            raise ValueError(f"ViCLIP checkpoint shapes do not match: {wrong[:5]}")
        model.load_state_dict(state)
        return model.eval()


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The official ``.pth`` (``{"model": state}``) or a plain state dict (.pth or .safetensors)."""
    state = read_weights(path, "ViCLIP checkpoint")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def byte_symbols() -> list[str]:
    """The 256 byte symbols in CLIP's vocabulary order: the printable Latin-1 bytes, standing for
    themselves, in byte order; then the other bytes, in byte order, as chr(256), chr(257), …"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]


def bpe_tokenizer(vocabulary_file: str | Path):
    """transformers' CLIP tokenizer built from CLIP's ``bpe_simple_vocab_16e6.txt.gz``: the vocabulary is
    the 256 byte symbols, the same with the end-of-word mark, every merge's result, then the two special
    tokens — CLIP's own construction, so ids equal the official tokenizer's."""
    from transformers import CLIPTokenizer

    path = Path(vocabulary_file)
    if not path.is_file():
        raise ValueError(f"ViCLIP's BPE vocabulary not found: {path}")
    try:
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"{path}: not a gzip BPE merges file ({exc})") from None
    merges = [line for line in lines[1 : BPE_MERGES + 1] if line.strip()]
    if not merges or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{path}: not a BPE merges file (a header line, then one 'a b' pair per line)")
    symbols = byte_symbols()
    words = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=[tuple(m.split()) for m in merges])


def tokenize(tokenizer, prompt: str, context: int = CONTEXT) -> torch.Tensor:
    """(1, context) ids: start, the prompt's tokens, end, zero padding; a long prompt is cut with its
    last kept token replaced by the end token (the official rule)."""
    ids = tokenizer(prompt)["input_ids"]
    if len(ids) > context:
        ids = ids[: context - 1] + [tokenizer.eos_token_id]
    return torch.tensor([ids + [0] * (context - len(ids))])


class ViClipSemantic:
    """The official semantic metric from a folder holding ``ViClip-InternVid-10M-FLT.pth`` and
    ``bpe_simple_vocab_16e6.txt.gz`` (HeliosBench's ``checkpoints/ViCLIP``)."""

    def __init__(self, folder: str | Path, device="cpu"):
        folder = Path(folder)
        self.model = ViCLIP.from_state(load_checkpoint(folder / CHECKPOINT)).to(device)
        self.tokenizer = bpe_tokenizer(folder / VOCABULARY)
        self.device = torch.device(device)
        self._text: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def video_embedding(self, frames: np.ndarray) -> torch.Tensor:
        vision = self.model.sizes["vision"]
        picked = frames[middle_samples(vision["frames"], len(frames))]
        pixels = clip_pixels(picked, vision["resolution"]).permute(1, 0, 2, 3)[None].to(self.device)  # (1, 3, T, …)
        return F.normalize(self.model.vision_encoder(pixels).float(), dim=-1)[0]

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text:
            tokens = tokenize(self.tokenizer, prompt, self.model.sizes["text"]["context"]).to(self.device)
            self._text[prompt] = F.normalize(self.model.text_encoder(tokens).float(), dim=-1)[0]
        return self._text[prompt]

    def __call__(self, frames: np.ndarray, prompt: str) -> float:
        return float(self.video_embedding(frames) @ self.text_embedding(prompt))
