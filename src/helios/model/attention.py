"""Attention backend dispatch.

Every backend computes plain softmax attention with scale 1/sqrt(head_dim), no mask, not causal,
on (B, S, heads, head_dim) tensors. PyTorch SDPA is always there; the others are used only when
asked for and present, and each is tested equal to the reference (``math``) on random inputs.

The backend is a setting of each model, not of the process: ``set_attention_backend(model, name)``
or the ``attention_backend(model, name)`` context manager (the command line also reads the
``HELIOS_ATTENTION`` environment variable). Two models in one process (a teacher and a student) can
use different kernels, and threads share what their model says.

=============  ==========================================================================
``sdpa``       PyTorch's scaled_dot_product_attention, its own kernel choice (default)
``math``       SDPA's reference math kernel (slow; the reference in tests)
``flash``      SDPA restricted to its FlashAttention-2 kernel
``efficient``  SDPA restricted to its memory-efficient kernel
``cudnn``      SDPA restricted to cuDNN attention (fastest on H100 in our measurements)
``flash_attn`` the ``flash_attn`` package (FlashAttention-2), if installed
``flash_attn3````flash_attn_interface`` (FlashAttention-3, Hopper), if installed
``fp8``        our Triton kernel with e4m3 products and per-block scales (kernels/fp8_attention.py):
               inference only, CUDA (Hopper/Ada); not exact — its error is reported like FP8 GEMMs'
=============  ==========================================================================
"""

from __future__ import annotations

import contextlib
import importlib
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
BACKENDS = ("sdpa", *_SDPA_KERNELS, "flash_attn", "flash_attn3", "fp8")
APPROXIMATE_BACKENDS = ("fp8",)  # not equal to the reference within 16-bit rounding: their error is reported

DEFAULT_BACKEND = "sdpa"


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


# Resolved backends by name; the packaged ones are added when first asked for. A plain dict (not an
# lru_cache) so that torch.compile reads it as a constant instead of tracing the lookup.
_RESOLVED: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": _sdpa,
    **{name: _sdpa_with(kernel) for name, kernel in _SDPA_KERNELS.items()},
}
_PACKAGES = {"flash_attn": "flash_attn", "flash_attn3": "flash_attn_interface"}


def _resolve(name: str) -> Callable[..., torch.Tensor]:
    if name == "fp8" and name not in _RESOLVED:
        from .kernels.fp8_attention import fp8_attention  # imports Triton: only when asked for

        _RESOLVED[name] = fp8_attention
    if name not in _RESOLVED:
        if name not in _PACKAGES:
            raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
        _RESOLVED[name] = _flash_attn_package(_PACKAGES[name])
    return _RESOLVED[name]


def check_attention_backend(name: str) -> None:
    """Raise a ValueError (unknown name) or RuntimeError (package missing) unless ``name`` can be used."""
    _resolve(name)


def _attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if hasattr(m, "backend") and hasattr(m, "to_q")]


def set_attention_backend(model: torch.nn.Module, name: str) -> None:
    """Use backend ``name`` for every attention call of ``model`` from now on."""
    _resolve(name)  # an unknown or missing backend fails here, not in the middle of a forward
    for module in _attention_modules(model):
        module.backend = name


def get_attention_backend(model: torch.nn.Module) -> str:
    names = {m.backend for m in _attention_modules(model)}
    return names.pop() if len(names) == 1 else ",".join(sorted(names))


@contextlib.contextmanager
def attention_backend(model: torch.nn.Module, name: str) -> Iterator[None]:
    previous = {module: module.backend for module in _attention_modules(model)}
    set_attention_backend(model, name)
    try:
        yield
    finally:
        for module, backend in previous.items():
            module.backend = backend


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = DEFAULT_BACKEND) -> torch.Tensor:
    """Softmax attention on (B, S, heads, head_dim) tensors with the named backend."""
    if q.shape[1] == 0:  # nothing to attend: fused kernels may refuse it; the math one keeps k, v in autograd
        backend = "math"
    return _RESOLVED[backend](q, k, v) if backend in _RESOLVED else _resolve(backend)(q, k, v)


def is_available(name: str, device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether ``name`` runs here on a tiny input (used by tests and benchmarks to pick backends)."""
    try:
        run = _resolve(name)
        x = torch.randn(1, 8, 2, 64, device=device, dtype=dtype)
        run(x, x, x)
        return True
    except (RuntimeError, ValueError):
        return False
