"""FP8 (e4m3) quantisation of the transformer's linear layers, and its error against the reference.

``quantize_linears(model, scales="per_row"|"per_tensor")`` stores every block linear layer's weight
in float8_e4m3fn with its scales and quantises the activations on the fly (per tensor, dynamic), then
computes the product from the dequantised operands. This reproduces the numerics of an FP8 GEMM
(operands rounded to e4m3, accumulation in higher precision) on any device, so the error can be
measured anywhere; the fast path through the GPU's FP8 tensor cores is a separate step (not here yet).

``fp8_error_report(reference, quantized, inputs)`` gives the relative L2 error of every block linear
layer's output and of the model output, with both models fed the same inputs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448


def _quantize(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)


class FP8Linear(nn.Module):
    """A linear layer whose weight lives in e4m3 with per-row or per-tensor scales."""

    def __init__(self, linear: nn.Linear, scales: str = "per_row"):
        super().__init__()
        if scales not in ("per_row", "per_tensor"):
            raise ValueError(f"scales must be 'per_row' or 'per_tensor', got {scales!r}")
        weight = linear.weight.detach().float()
        amax = weight.abs().amax(dim=1, keepdim=True) if scales == "per_row" else weight.abs().amax()
        self.register_buffer("weight_scale", (amax / E4M3_MAX).clamp_min(1e-12))
        self.register_buffer("weight_fp8", _quantize(weight, self.weight_scale))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.scales = scales
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation_scale = (x.detach().abs().amax().float() / E4M3_MAX).clamp_min(1e-12)
        x_q = _quantize(x, activation_scale).float() * activation_scale
        w_q = self.weight_fp8.float() * self.weight_scale
        out = F.linear(x_q, w_q, None if self.bias is None else self.bias.float())
        return out.to(x.dtype if x.dtype != torch.float32 else self.out_dtype)


def block_linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name.startswith("blocks.")]


def quantize_linears(model: nn.Module, scales: str = "per_row") -> nn.Module:
    """A copy of ``model`` whose block linear layers are FP8 (the embedders and head stay as they are)."""
    quantized = copy.deepcopy(model)
    for name in block_linear_names(quantized):
        parent_name, _, child = name.rpartition(".")
        parent = quantized.get_submodule(parent_name)
        setattr(parent, child, FP8Linear(getattr(parent, child), scales))
    return quantized


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@torch.no_grad()
def fp8_error_report(reference: nn.Module, quantized: nn.Module, inputs: dict) -> dict:
    """Relative L2 errors: each FP8 layer against its reference layer *on the reference layer's own
    input* (the layer's error alone), and the whole FP8 model against the reference (end to end)."""
    per_layer: dict[str, list[float]] = {}

    def compare(name):
        def hook(module, args, out):
            fp8 = quantized.get_submodule(name)(args[0])
            per_layer.setdefault(name, []).append(_relative(fp8, out))
        return hook

    hooks = [reference.get_submodule(name).register_forward_hook(compare(name)) for name in block_linear_names(reference)]
    try:
        expected = reference(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    got = quantized(**inputs)
    layers = {name: max(values) for name, values in per_layer.items()}
    return {"end_to_end": _relative(got, expected), "per_layer": layers,
            "worst_layer": max(layers, key=layers.get), "mean_layer": sum(layers.values()) / len(layers)}
