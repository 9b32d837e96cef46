"""Reading a metric network's weights from the user's file (``.safetensors``, or a ``.pth`` read with
``weights_only=True``: no pickled code runs), with one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import torch


def read_weights(path: str | Path, what: str):
    """The file's contents (a state dict, or the dict a ``.pth`` holds). ``what`` names the weights in
    the error when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable weights file ({str(exc).splitlines()[0]})") from None
