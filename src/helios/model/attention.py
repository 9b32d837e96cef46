"""Attention backend dispatch.

Every backend computes plain softmax attention with scale 1/sqrt(head_dim), no mask, not causal,
on (B, S, heads, head_dim) tensors. PyTorch SDPA is always there; the others are used only when
asked for and present, and each is tested equal to the reference (``math``) on random inputs.

Choose with :func:`set_attention_backend`, the :func:`attention_backend` context manager or the
``HELIOS_ATTENTION`` environment variable:

=============  ==========================================================================
``sdpa``       PyTorch's scaled_dot_product_attention, its own kernel choice (default)
``math``       SDPA's reference math kernel (slow; the reference in tests)
``flash``      SDPA restricted to its FlashAttention-2 kernel
``efficient``  SDPA restricted to its memory-efficient kernel
``cudnn``      SDPA restricted to cuDNN attention (fastest on H100 in our measurements)
``flash_attn`` the ``flash_attn`` package (FlashAttention-2), if installed
``flash_attn3````flash_attn_interface`` (FlashAttention-3, Hopper), if installed
=============  ==========================================================================
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

_SDPA_KERNELS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
BACKENDS = ("sdpa", *_SDPA_KERNELS, "flash_attn", "flash_attn3")

_current = os.environ.get("HELIOS_ATTENTION", "sdpa")


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _sdpa_with(kernel: SDPBackend) -> Callable[..., torch.Tensor]:
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(kernel):
            return _sdpa(q, k, v)

    return run


def _flash_attn_package(module_name: str) -> Callable[..., torch.Tensor]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise RuntimeError(f"attention backend needs the '{module_name}' package, which is not installed") from None

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = module.flash_attn_func(q, k, v, causal=False)
        # FlashAttention-3 returned (out, lse) in some releases.
        return out[0] if isinstance(out, tuple) else out

    return run


def _resolve(name: str) -> Callable[..., torch.Tensor]:
    if name == "sdpa":
        return _sdpa
    if name in _SDPA_KERNELS:
        return _sdpa_with(_SDPA_KERNELS[name])
    if name == "flash_attn":
        return _flash_attn_package("flash_attn")
    if name == "flash_attn3":
        return _flash_attn_package("flash_attn_interface")
    raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")


def set_attention_backend(name: str) -> None:
    """Select the backend used by every Helios attention call from now on."""
    global _current, _impl
    _impl = _resolve(name)
    _current = name


def get_attention_backend() -> str:
    return _current


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    previous = _current
    set_attention_backend(name)
    try:
        yield
    finally:
        set_attention_backend(previous)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention on (B, S, heads, head_dim) tensors with the selected backend."""
    return _impl(q, k, v)


def is_available(name: str, device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether ``name`` runs here on a tiny input (used by tests and benchmarks to pick backends)."""
    try:
        run = _resolve(name)
        x = torch.randn(1, 8, 2, 64, device=device, dtype=dtype)
        run(x, x, x)
        return True
    except (RuntimeError, ValueError):
        return False


_impl = _resolve(_current)
