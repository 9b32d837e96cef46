"""FP8 (e4m3) quantisation of the transformer's linear layers, and its error against the reference.

``quantize_linears(model, scales="per_row"|"per_tensor")`` stores every block linear layer's weight
in float8_e4m3fn with its scales and quantises the activations on the fly (dynamic scales: one per
token row with ``per_row``, one per tensor with ``per_tensor``). Two kernels compute the product:

* ``scaled_mm`` — ``torch._scaled_mm``: the FP8 tensor-core GEMM on Hopper/Ada (row-wise or
  tensor-wise scales applied in the epilogue, bf16 out); PyTorch's CPU build implements it too,
  which is how CI tests it.
* ``emulated`` — the dequantised operands through an ordinary float32 matmul: the same rounding of
  the operands to e4m3, runnable anywhere; the reference the kernel path is tested against.

``fp8_error_report(model, inputs)`` quantises in place and gives the relative L2 error of every block
linear layer's output and of the model output.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448


def e4m3_scale(amax: torch.Tensor) -> torch.Tensor:
    """The scale that maps ``amax`` onto e4m3's largest value (fp32; never zero)."""
    return (amax.float() / E4M3_MAX).clamp_min(1e-12)


def to_e4m3(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x / scale`` in e4m3, saturated at ±448."""
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)


KERNELS = ("scaled_mm", "emulated")


class FP8Linear(nn.Module):
    """A linear layer whose weight lives in e4m3 with per-row or per-tensor scales (see the module doc)."""

    def __init__(self, linear: nn.Linear, scales: str = "per_row", kernel: str = "scaled_mm"):
        super().__init__()
        if scales not in ("per_row", "per_tensor"):
            raise ValueError(f"scales must be 'per_row' or 'per_tensor', got {scales!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        out_features, in_features = linear.weight.shape
        if kernel == "scaled_mm" and (in_features % 16 or out_features % 16):
            raise ValueError(f"the FP8 GEMM needs both sizes divisible by 16, got {in_features}→{out_features}")
        weight = linear.weight.detach().float()
        amax = weight.abs().amax(dim=1, keepdim=True) if scales == "per_row" else weight.abs().amax()
        self.register_buffer("weight_scale", e4m3_scale(amax))
        self.register_buffer("weight_fp8", to_e4m3(weight, self.weight_scale))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.scales, self.kernel = scales, kernel
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        amax = rows.abs().amax(dim=1, keepdim=True) if self.scales == "per_row" else rows.abs().amax()
        activation_scale = e4m3_scale(amax)
        x_fp8 = to_e4m3(rows, activation_scale)
        out_dtype = x.dtype if x.dtype != torch.float32 else self.out_dtype
        if self.kernel == "scaled_mm":
            # Row-wise scaling wants (M, 1) activation and (1, N) weight scales and a bf16 result; the
            # weight's transpose is the column-major right operand the GEMM expects.
            weight_scale = self.weight_scale.view(1, -1) if self.scales == "per_row" else self.weight_scale
            out = torch._scaled_mm(
                x_fp8,
                self.weight_fp8.t(),
                scale_a=activation_scale,
                scale_b=weight_scale,
                out_dtype=torch.bfloat16 if self.scales == "per_row" else out_dtype,
            )
            out = out.to(out_dtype)
            if self.bias is not None:
                out = out + self.bias.to(out_dtype)
        else:
            w_q = self.weight_fp8.float() * self.weight_scale
            out = F.linear(x_fp8.float() * activation_scale, w_q, None if self.bias is None else self.bias.float())
            out = out.to(out_dtype)
        return out.reshape(*x.shape[:-1], -1)


def block_linear_names(model: nn.Module) -> list[str]:
    return [
        name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name.startswith("blocks.")
    ]


def quantize_linears(
    model: nn.Module, scales: str = "per_row", kernel: str = "scaled_mm", inplace: bool = False
) -> nn.Module:
    """``model`` (or a copy) with its block linear layers in FP8; the embedders, the modulation tables
    and the head stay as they are. ``inplace`` frees each 16-bit weight as it is replaced, so the
    14B model can be quantised on a card that cannot hold both copies."""
    quantized = model if inplace else copy.deepcopy(model)
    for name in block_linear_names(quantized):
        parent_name, _, child = name.rpartition(".")
        parent = quantized.get_submodule(parent_name)
        setattr(parent, child, FP8Linear(getattr(parent, child), scales, kernel))
    return quantized


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32."""
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@torch.no_grad()
def fp8_error_report(model: nn.Module, inputs: dict, scales: str = "per_row", kernel: str = "scaled_mm") -> dict:
    """Quantise ``model`` in place and report the relative L2 errors it costs: each block linear layer
    in FP8 against the same layer in 16 bits *on the 16-bit model's own activations* (the layer's
    error alone; each FP8 layer exists only while it is measured, so no second copy of the model is
    needed), and the FP8 model's output against the 16-bit output for ``inputs`` (end to end)."""
    per_layer: dict[str, float] = {}

    def compare(name):
        def hook(module, args, out):
            fp8 = FP8Linear(module, scales, kernel)(args[0])
            per_layer[name] = max(per_layer.get(name, 0.0), relative_l2(fp8, out))

        return hook

    hooks = [model.get_submodule(name).register_forward_hook(compare(name)) for name in block_linear_names(model)]
    try:
        expected = model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    if not per_layer:
        raise RuntimeError(
            "no block linear layer ran eagerly (compiled blocks hide them): "
            "measure before compile_blocks(), or after compile_blocks(False)"
        )
    quantize_linears(model, scales, kernel, inplace=True)
    got = model(**inputs)
    return {
        "end_to_end": relative_l2(got, expected),
        "per_layer": per_layer,
        "worst_layer": max(per_layer, key=per_layer.get),
        "mean_layer": sum(per_layer.values()) / len(per_layer),
    }
