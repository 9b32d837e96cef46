"""Speed switches of a Helios transformer, beside the network instead of inside it.

Each switch is tested equal to the reference path (tests/model). CUDA graphs live in ``graphs.py``,
block offload in ``offload.py``, FP8 layers in ``fp8.py``; this module gathers the small switches and
the public questions other code asks about a model (which paths are on), so callers never reach
into a model's private state.
"""

from __future__ import annotations

import torch.nn as nn

from .fp8 import FP8Linear


def use_fused_kernels(model: nn.Module, enabled: bool = True) -> None:
    """The Triton kernels (LayerNorm + modulation, RoPE; forward and backward) where Triton runs;
    the reference path stays in use elsewhere."""
    for block in model.blocks:
        block.fused_kernels = enabled
        block.attn1.fused_rope = enabled


def fuse_qkv(model: nn.Module, enabled: bool = True) -> None:
    """Compute self-attention q, k and v with one GEMM (parameter names and checkpoints unchanged)."""
    for block in model.blocks:
        block.attn1.fused_qkv = enabled


def compile_blocks(model: nn.Module, enabled: bool = True, **options) -> None:
    """Regional ``torch.compile``: each block compiled on its own (the 40 blocks share one graph per
    input shape, so a pyramid run compiles three times, not 120). ``options`` go to torch.compile,
    e.g. ``mode="max-autotune-no-cudagraphs"``; ``enabled=False`` returns to eager blocks."""
    for block in model.blocks:
        if enabled:
            block.compile(**{"dynamic": False, **options})
        else:
            block._compiled_call_impl = None  # what nn.Module.compile() set


def blocks_compiled(model: nn.Module) -> bool:
    return any(getattr(block, "_compiled_call_impl", None) is not None for block in model.blocks)


def is_fp8(model: nn.Module) -> bool:
    """Whether the block linears already run through FP8 layers."""
    return any(isinstance(module, FP8Linear) for module in model.blocks.modules())
