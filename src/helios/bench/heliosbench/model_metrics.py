"""HeliosBench's model-based metrics, from weights and endpoints the user gives (nothing is downloaded).

- **Aesthetic** (official): every frame → CLIP ViT-L/14 image embedding (``clip_pixels``: read 640 wide,
  shorter side to 224 bicubic, centre crop, CLIP's normalisation) → L2-normalised → the LAION linear head → ÷ 10 → mean.
  CLIP is read from a transformers CLIP folder (``openai/clip-vit-large-patch14`` holds the same network
  as the official ``ViT-L-14.pt``); the head from its ``.pth`` (``weight`` (1, D), ``bias`` (1,)) or
  a safetensors file with those keys.
- **Semantic, CLIP fallback** (``semantic_clip``, for users without ViCLIP's weights; the official
  metric is ViCLIP, ``viclip.py``): the mean cosine between the prompt's CLIP text embedding and 8 frames sampled at
  the middle of 8 equal segments. Rated on the semantic table and weighted as the semantic metric, but
  labelled: its scale is CLIP's, not ViCLIP's.
- **Naturalness** (off by default; not reproducible — a closed model judges): 16 evenly spaced frames,
  long side 512, JPEG, sent to an OpenAI-compatible chat endpoint at temperature 0 with a rubric asking
  for one integer 1–5; normalised (s − 1) / 4.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import opencv
from .weights import read_weights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SEMANTIC_FRAMES = 8
READ_WIDTH = 640  # the official reader's width
NATURALNESS_FRAMES = 16
NATURALNESS_SIDE = 512
RUBRIC = (
    "You judge whether a video looks like real footage or like machine-generated video. The images are "
    "frames of one video in time order. Look for distorted anatomy or objects, physically impossible motion, "
    "flicker, texture that crawls, objects that appear or vanish, and text that is not legible. Answer with "
    "one integer only: 5 = indistinguishable from real footage, 4 = minor artefacts, 3 = noticeable "
    "artefacts, 2 = clearly generated, 1 = severely broken."
)


def middle_samples(count: int, frames: int) -> list[int]:
    """The official "middle" sampling: ``count`` segments with integer edges, the middle frame of each
    (fewer frames than ``count``: the last index repeated)."""
    edges = np.linspace(0, frames, min(count, frames) + 1).astype(int)
    picked = [int(edges[i] + edges[i + 1] - 1) // 2 for i in range(len(edges) - 1)]
    return picked + [picked[-1]] * (count - len(picked))


def clip_pixels(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) → (T, 3, size, size) as the official evaluation prepares frames for CLIP and
    ViCLIP: the video read 640 wide (aspect kept, even height; its reader's filter is ffmpeg's, bilinear
    here), the shorter side resized to ``size`` (bicubic, no antialiasing, rounded back to 0–255 as
    torchvision does on uint8), centre crop, CLIP's mean/std normalisation."""
    h, w = frames.shape[1:3]
    if w != READ_WIDTH:
        cv2 = opencv()
        height = int(round(int(READ_WIDTH / (w / h)) / 2) * 2)
        frames = np.stack([cv2.resize(f, (READ_WIDTH, height), interpolation=cv2.INTER_LINEAR) for f in frames])
        h, w = frames.shape[1:3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    short, long = min(h, w), max(h, w)
    resized = (size, int(size * long / short)) if h <= w else (int(size * long / short), size)
    x = F.interpolate(x, size=resized, mode="bicubic", align_corners=False, antialias=False).round().clamp(0, 255)
    top, left = int(round((resized[0] - size) / 2)), int(round((resized[1] - size) / 2))
    x = x[:, :, top : top + size, left : left + size] / 255
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def load_linear_head(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The LAION aesthetic head: ``weight`` (1, D) and ``bias`` (1,) from a .pth or .safetensors file."""
    state = read_weights(path, "aesthetic head")
    state = {k.removeprefix("module."): v for k, v in state.items()} if isinstance(state, dict) else {}
    if set(state) != {"weight", "bias"} or state["weight"].ndim != 2 or state["weight"].shape[0] != 1:
        raise ValueError(f"{path}: a linear head needs exactly 'weight' (1, D) and 'bias' (1,); got {sorted(state)}")
    return state["weight"].float(), state["bias"].float()


class ClipMetrics:
    """The aesthetic and the CLIP-semantic metrics from a local CLIP folder (and the aesthetic head)."""

    def __init__(self, clip_folder: str | Path, aesthetic_head: str | Path | None = None, device="cpu", batch=32):
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(clip_folder)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder}: not a transformers CLIP folder (no config.json)")
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval().to(device)
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: cannot load CLIP ({str(exc).splitlines()[0]})") from None
        self.device, self.batch = torch.device(device), batch
        self.size = self.model.config.vision_config.image_size
        self.head = None
        if aesthetic_head is not None:
            weight, bias = load_linear_head(aesthetic_head)
            features = self.model.config.projection_dim
            if weight.shape[1] != features:
                raise ValueError(f"the aesthetic head reads {weight.shape[1]} features; this CLIP gives {features}")
            self.head = (weight.to(self.device), bias.to(self.device))

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """L2-normalised image embeddings (T, D) of uint8 frames."""
        parts = []
        for start in range(0, len(frames), self.batch):
            pixels = clip_pixels(frames[start : start + self.batch], self.size).to(self.device)
            parts.append(F.normalize(_features(self.model.get_image_features(pixel_values=pixels)), dim=-1))
        return torch.cat(parts)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        return F.normalize(_features(self.model.get_text_features(**tokens)), dim=-1)[0]

    def aesthetic(self, frames: np.ndarray) -> float:
        if self.head is None:
            raise ValueError("the aesthetic metric needs the LAION linear head (--aesthetic-head)")
        weight, bias = self.head
        return float((self.image_embeddings(frames) @ weight.T + bias).mean() / 10)

    def semantic(self, frames: np.ndarray, prompt: str) -> float:
        picked = frames[middle_samples(SEMANTIC_FRAMES, len(frames))]
        return float((self.image_embeddings(picked) @ self.text_embedding(prompt)).mean())


def _features(output) -> torch.Tensor:
    """Projected CLIP features: a tensor (transformers 4) or an output whose ``pooler_output`` holds
    them (transformers 5)."""
    return (output if isinstance(output, torch.Tensor) else output.pooler_output).float()


class NaturalnessEndpoint:
    """The naturalness judge behind an OpenAI-compatible ``/chat/completions`` endpoint (``url`` is the
    API base, e.g. ``http://localhost:8000/v1``); the key is read from ``$HELIOS_NATURALNESS_KEY``."""

    def __init__(self, url: str, model: str, timeout: float = 120.0):
        if not re.match(r"https?://", url):
            raise ValueError(f"naturalness endpoint must be an http(s) URL, got {url!r}")
        self.url, self.model, self.timeout = url.rstrip("/") + "/chat/completions", model, timeout

    @staticmethod
    def jpeg_frames(frames: np.ndarray) -> list[str]:
        """16 evenly spaced frames, long side 512, as base64 JPEG data URLs."""
        cv2 = opencv()
        picked = frames[np.linspace(0, len(frames) - 1, min(NATURALNESS_FRAMES, len(frames))).round().astype(int)]
        urls = []
        for frame in picked:
            h, w = frame.shape[:2]
            scale = NATURALNESS_SIDE / max(h, w)
            small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError("a frame could not be encoded as JPEG")
            urls.append("data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode())
        return urls

    def __call__(self, frames: np.ndarray) -> float:
        content = [{"type": "text", "text": RUBRIC}]
        content += [{"type": "image_url", "image_url": {"url": url}} for url in self.jpeg_frames(frames)]
        body = {"model": self.model, "temperature": 0, "messages": [{"role": "user", "content": content}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get("HELIOS_NATURALNESS_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
            text = reply["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"naturalness endpoint {self.url}: no usable answer ({exc})") from None
        found = re.search(r"\b([1-5])\b", str(text))
        if found is None:
            raise ValueError(f"naturalness endpoint {self.url}: the answer holds no rating 1–5: {str(text)[:80]!r}")
        return (int(found.group(1)) - 1) / 4
