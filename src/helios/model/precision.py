"""The released precision policy: which parameters stay fp32 in a bf16 (or fp16) model.

LayerNorms, modulation tables and the time embedder run in fp32 in the released models; their
parameters keep fp32 whatever dtype the rest of the network is cast to.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# Parameters whose dotted name contains one of these stay fp32 whatever the model dtype (as released).
FP32_PARAMETER_PATTERNS = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3", "history_key_scale")


def keeps_fp32(name: str) -> bool:
    return any(pattern in name for pattern in FP32_PARAMETER_PATTERNS)


def cast_tensors(module: nn.Module, dtype: torch.dtype, keep_fp32=keeps_fp32) -> nn.Module:
    """Cast every floating parameter and buffer to ``dtype`` except those ``keep_fp32(name)`` names."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        if not tensor.is_floating_point():
            continue
        target = torch.float32 if keep_fp32(name) else dtype
        if tensor.dtype != target:
            tensor.data = tensor.data.to(target)
    return module
