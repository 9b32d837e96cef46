"""LoRA adapters at inference, through peft: diffusers-, Wan- and musubi/kohya-format files for
Helios / Wan2.1-14B, several adapters with scales, fuse / unfuse.

File formats (all map onto this transformer's module names, which are diffusers'):
* diffusers: ``[transformer.]blocks.0.attn1.to_q.lora_A.weight`` / ``lora_B.weight`` (``lora_B.bias``
  optional); scale 1 unless the file's metadata gives ``lora_alpha``;
* Wan original: ``diffusion_model.blocks.0.self_attn.q.lora_down.weight`` (or ``lora_A``) / ``lora_up`` /
  ``alpha`` (scale alpha / rank) / ``diff_b`` (a bias delta), with Wan's module names;
* musubi / kohya: ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` / ``lora_up`` / ``alpha``.

Every key must land on a linear layer of the model with matching shapes: an unknown key is an error
that names it, never skipped. (Norm-layer ``diff`` keys are accepted only when all zero — they are in
some Wan LoRAs and change nothing.)
"""

from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

# Wan's original module names → this model's (= diffusers'); per block, then outside the blocks.
WAN_BLOCK_NAMES = {
    **{f"self_attn.{o}": f"attn1.{d}" for o, d in zip("qkvo", ("to_q", "to_k", "to_v", "to_out.0"))},
    **{f"cross_attn.{o}": f"attn2.{d}" for o, d in zip("qkvo", ("to_q", "to_k", "to_v", "to_out.0"))},
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
WAN_TOP_NAMES = {
    "head.head": "proj_out",
    "time_projection.1": "condition_embedder.time_proj",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
}
# musubi / kohya flatten the Wan names with underscores
MUSUBI_BLOCK_NAMES = {wan.replace(".", "_"): wan for wan in WAN_BLOCK_NAMES}
MUSUBI_TOP_NAMES = {wan.replace(".", "_"): wan for wan in WAN_TOP_NAMES}
PARTS = {"lora_down.weight": "A", "lora_A.weight": "A", "lora_up.weight": "B", "lora_B.weight": "B"}


class LoraFormatError(ValueError):
    pass


@dataclass
class LoraWeights:
    """One adapter in this model's names: per module its A (r, in), B (out, r), optional bias, alpha."""

    down: dict[str, torch.Tensor] = field(default_factory=dict)
    up: dict[str, torch.Tensor] = field(default_factory=dict)
    bias: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha: dict[str, float] = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return sorted(self.down)

    def rank(self, module: str) -> int:
        return self.down[module].shape[0]


def read_lora(source: str | Path | dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a LoRA file (.safetensors; a folder holding one) or a state dict."""
    if isinstance(source, dict):
        return dict(source), {}
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise LoraFormatError(f"{path}: expected one .safetensors LoRA file in the folder, found {len(files)}")
        path = files[0]
    if not path.is_file():
        raise LoraFormatError(f"LoRA file not found: {path}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise LoraFormatError(f"{path}: not a readable safetensors LoRA file ({exc})") from None
    if not tensors:
        raise LoraFormatError(f"{path}: the LoRA file holds no tensors")
    return tensors, metadata


def convert(tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> LoraWeights:
    """Any supported format → :class:`LoraWeights` in this model's module names."""
    keys = list(tensors)
    if any(k.startswith("lora_unet_") for k in keys):
        return _from_wan({_musubi_to_wan(k): v for k, v in tensors.items()})
    if any(k.startswith("diffusion_model.") for k in keys):
        return _from_wan({k.removeprefix("diffusion_model."): v for k, v in tensors.items()})
    return _from_diffusers(tensors, metadata or {})


def _musubi_to_wan(key: str) -> str:
    name, dot, suffix = key.partition(".")
    if not name.startswith("lora_unet_") or not dot:
        raise LoraFormatError(f"unexpected key {key!r} in a musubi/kohya LoRA (expected lora_unet_<module>.<part>)")
    flat = name.removeprefix("lora_unet_")
    block = re.fullmatch(r"blocks_(\d+)_(.+)", flat)
    if block:
        inner = MUSUBI_BLOCK_NAMES.get(block.group(2))
        if inner is None:
            raise LoraFormatError(f"LoRA key {key!r}: unknown Wan block module {block.group(2)!r}")
        return f"blocks.{block.group(1)}.{inner}.{suffix}"
    top = MUSUBI_TOP_NAMES.get(flat)
    if top is None:
        raise LoraFormatError(f"LoRA key {key!r}: unknown Wan module {flat!r}")
    return f"{top}.{suffix}"


def _wan_module(name: str) -> str:
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if block:
        inner = block.group(2)
        if inner in ("cross_attn.k_img", "cross_attn.v_img"):
            raise LoraFormatError(
                f"LoRA module {name!r} belongs to Wan's image cross-attention (a Wan I2V LoRA): Helios has none"
            )
        if inner not in WAN_BLOCK_NAMES:
            raise LoraFormatError(f"LoRA module {name!r}: unknown Wan block module {inner!r}")
        return f"blocks.{block.group(1)}.{WAN_BLOCK_NAMES[inner]}"
    if name not in WAN_TOP_NAMES:
        raise LoraFormatError(f"LoRA module {name!r} is not a Wan module this model has")
    return WAN_TOP_NAMES[name]


def _from_wan(tensors: dict[str, torch.Tensor]) -> LoraWeights:
    weights = LoraWeights()
    for key, value in tensors.items():
        if key.endswith((".diff", ".diff_b")) and "norm" in key:
            if value.abs().max() > 0:
                raise LoraFormatError(f"LoRA key {key!r}: a non-zero norm-layer delta is not supported")
            continue
        name, part = _split(key, ("lora_down.weight", "lora_up.weight", "lora_A.weight", "lora_B.weight"))
        if part is None and key.endswith(".alpha"):
            weights.alpha[_wan_module(key.removesuffix(".alpha"))] = float(value)
        elif part is None and key.endswith(".diff_b"):
            weights.bias[_wan_module(key.removesuffix(".diff_b"))] = value
        elif part is None:
            raise LoraFormatError(f"unexpected key {key!r} in a Wan-format LoRA")
        else:
            _store(weights, _wan_module(name), PARTS[part], value)
    return _checked(weights)


def _from_diffusers(tensors: dict[str, torch.Tensor], metadata: dict) -> LoraWeights:
    weights = LoraWeights()
    for key, value in tensors.items():
        bare = key.removeprefix("transformer.")
        name, part = _split(bare, ("lora_A.weight", "lora_B.weight", "lora_B.bias"))
        if part is None:
            raise LoraFormatError(
                f"unexpected key {key!r}: not a diffusers, Wan (diffusion_model.*) or musubi (lora_unet_*) LoRA key"
            )
        if part == "lora_B.bias":
            weights.bias[name] = value
        else:
            _store(weights, name, PARTS[part], value)
    alpha = _metadata_alpha(metadata)
    if alpha is not None:
        weights.alpha = dict.fromkeys(weights.down, alpha)
    return _checked(weights)


def _metadata_alpha(metadata: dict) -> float | None:
    """diffusers stores the adapter's LoraConfig as JSON under ``lora_adapter_metadata``."""
    raw = metadata.get("lora_adapter_metadata") if metadata else None
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        raise LoraFormatError("the LoRA file's lora_adapter_metadata is not JSON") from None
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise LoraFormatError("LoRA metadata with per-module alpha/rank patterns is not supported")
    return float(config["lora_alpha"]) if "lora_alpha" in config else None


def _split(key: str, parts: tuple[str, ...]) -> tuple[str, str | None]:
    # (a peft-saved key may carry the adapter's name: …lora_A.default.weight)
    key = re.sub(r"\.(lora_[AB])\.[^.]+\.(weight|bias)$", r".\1.\2", key) if ".default." in key else key
    for part in parts:
        if key.endswith("." + part):
            return key[: -len(part) - 1], part
    return key, None


def _store(weights: LoraWeights, module: str, which: str, value: torch.Tensor) -> None:
    target = weights.down if which == "A" else weights.up
    if module in target:
        raise LoraFormatError(f"LoRA module {module!r} appears twice (mixed key styles)")
    target[module] = value


def _checked(weights: LoraWeights) -> LoraWeights:
    for module in sorted(set(weights.down) ^ set(weights.up)):
        raise LoraFormatError(f"LoRA module {module!r} has only one of its down/up (A/B) matrices")
    for module in sorted((set(weights.alpha) | set(weights.bias)) - set(weights.down)):
        raise LoraFormatError(f"LoRA module {module!r} has an alpha or bias but no matrices")
    if not weights.down:
        raise LoraFormatError("the LoRA holds no adapter matrices")
    for module in weights.down:
        down, up = weights.down[module], weights.up[module]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise LoraFormatError(
                f"LoRA module {module!r}: down {tuple(down.shape)} and up {tuple(up.shape)} are not a rank-r pair"
            )
    return weights


# ----------------------------------------------------------------------------- attaching to a model


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ImportError("LoRA adapters need peft: pip install 'helios[lora]' (or pip install peft)") from None


def lora_layers(model: nn.Module) -> list[nn.Module]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # without peft no adapter can have been loaded
        return []

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def adapter_names(model: nn.Module) -> list[str]:
    names: list[str] = []
    for layer in lora_layers(model):
        names += [n for n in layer.lora_A if n not in names]
    return names


def add_adapter(model: nn.Module, weights: LoraWeights, adapter_name: str) -> None:
    """Inject ``weights`` as the adapter ``adapter_name`` (peft) and make it active beside the others."""
    _require_peft()
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    if adapter_name in adapter_names(model):
        raise ValueError(f"an adapter named {adapter_name!r} is already loaded (unload it or pick another name)")
    _check_against(model, weights)
    modules = weights.modules
    ranks = {m: weights.rank(m) for m in modules}
    alphas = {m: weights.alpha.get(m, float(ranks[m])) for m in modules}
    first = modules[0]
    config = LoraConfig(
        r=ranks[first],
        lora_alpha=alphas[first],
        target_modules=modules,
        rank_pattern={f"^{re.escape(m)}$": r for m, r in ranks.items()},
        alpha_pattern={f"^{re.escape(m)}$": a for m, a in alphas.items()},
        lora_bias=bool(weights.bias),
    )
    active = _active_adapters(model)
    with warnings.catch_warnings():  # (peft warns that a second adapter joins the first: that is the point)
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    state = {f"{m}.lora_A.weight": weights.down[m] for m in modules}
    state |= {f"{m}.lora_B.weight": weights.up[m] for m in modules}
    if weights.bias:
        # peft multiplies lora_B's output, bias included, by alpha / rank; a Wan diff_b is added unscaled
        state |= {
            f"{m}.lora_B.bias": weights.bias.get(m, torch.zeros(weights.up[m].shape[0])) * ranks[m] / alphas[m]
            for m in modules
        }
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = [k for k in result.unexpected_keys if adapter_name in k or "lora_" in k]
    if unexpected:
        raise LoraFormatError(f"LoRA keys not taken by the model: {', '.join(unexpected[:5])}")
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    for layer in lora_layers(model):
        for container in (layer.lora_A, layer.lora_B):
            if adapter_name in container:
                container[adapter_name].to(device=device, dtype=dtype)
    model.requires_grad_(False)
    set_active(model, [*active, adapter_name])


def _check_against(model: nn.Module, weights: LoraWeights) -> None:
    """Every module exists, is linear and has the shapes the LoRA was made for."""
    named = dict(model.named_modules())
    for module in weights.modules:
        layer = named.get(module)
        base = getattr(layer, "base_layer", layer)
        if not isinstance(base, nn.Linear):
            raise LoraFormatError(f"LoRA module {module!r} is not a linear layer of this model")
        down, up = weights.down[module], weights.up[module]
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features:
            raise LoraFormatError(
                f"LoRA module {module!r}: shapes {tuple(down.shape)} / {tuple(up.shape)} do not fit the layer "
                f"({base.in_features} → {base.out_features}) — a LoRA for another model size?"
            )


def _active_adapters(model: nn.Module) -> list[str]:
    layers = lora_layers(model)
    if not layers:
        return []
    active = layers[0].active_adapters
    return [active] if isinstance(active, str) else list(active)


def set_active(model: nn.Module, names: list[str], weights: list[float] | None = None) -> None:
    """Make ``names`` the active adapters, each scaled by its weight (default 1)."""
    if getattr(model, "_lora_fused_scale", None) is not None:
        raise ValueError("the LoRA is fused: unfuse it before changing the adapters")
    known = adapter_names(model)
    for name in names:
        if name not in known:
            raise ValueError(f"no adapter named {name!r} (loaded: {', '.join(known) or 'none'})")
    weights = [1.0] * len(names) if weights is None else list(weights)
    if len(weights) != len(names):
        raise ValueError(f"{len(names)} adapters but {len(weights)} weights")
    for layer in lora_layers(model):
        present = [n for n in names if n in layer.lora_A]
        layer.set_adapter(present or names)
        for name, weight in zip(names, weights):
            if name in layer.lora_A:
                layer.set_scale(name, float(weight))
        layer.requires_grad_(False)


@contextmanager
def scaled(model: nn.Module, scale: float):
    """Every active adapter's contribution multiplied by ``scale`` inside the context (diffusers'
    ``attention_kwargs={"scale": s}``)."""
    layers = lora_layers(model)
    for layer in layers:
        layer.scale_layer(scale)
    try:
        yield
    finally:
        for layer in layers:
            layer.unscale_layer(scale)


def fuse(model: nn.Module, scale: float = 1.0, names: list[str] | None = None, safe: bool = False) -> None:
    """Fold the (given or active) adapters into the base weights, scaled by ``scale``. The scale stays
    on the adapters until ``unfuse`` so that unmerging subtracts exactly what was added."""
    if getattr(model, "_lora_fused_scale", None) is not None:
        raise ValueError("the LoRA is already fused: unfuse it first")
    names = names or _active_adapters(model)
    layers = lora_layers(model)
    for layer in layers:
        layer.scale_layer(scale)
        present = [n for n in names if n in layer.lora_A]
        if present:
            layer.merge(safe_merge=safe, adapter_names=present)  # safe: refuse weights that turn non-finite
    model._lora_fused_scale = scale


def unfuse(model: nn.Module) -> None:
    scale = getattr(model, "_lora_fused_scale", None)
    if scale is None:
        return
    for layer in lora_layers(model):
        layer.unmerge()
        layer.unscale_layer(scale)
    model._lora_fused_scale = None


def unload(model: nn.Module, names: list[str] | None = None) -> None:
    """Remove adapters (all by default); a model without adapters gets its plain linear layers back.
    Unloading everything while fused keeps the fused weights (diffusers' fuse-then-unload)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    fused = getattr(model, "_lora_fused_scale", None) is not None
    if fused and names:
        raise ValueError("unfuse the LoRA before unloading some of its adapters")
    names = names or adapter_names(model)
    for name in names:
        if name not in adapter_names(model):
            raise ValueError(f"no adapter named {name!r}")
    for module_name, layer in list(model.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            if not fused:
                for name in names:
                    if name in layer.lora_A:
                        layer.delete_adapter(name)
            if fused or not layer.lora_A:
                parent, _, child = module_name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, layer.get_base_layer())
    model._lora_fused_scale = None


class LoraAdapters:
    """diffusers' adapter methods, for the transformer (a mixin)."""

    def load_lora_adapter(
        self,
        pretrained_model_name_or_path_or_dict: str | Path | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        prefix: str | None = "transformer",
        hotswap: bool = False,
        low_cpu_mem_usage: bool = False,
    ) -> str:
        """Load a LoRA (any supported format) as ``adapter_name`` (default ``default_N``); returns the name.
        ``low_cpu_mem_usage`` is accepted for diffusers' callers (the tensors are read once either way)."""
        if hotswap:
            raise ValueError("hotswap is not supported: unload the adapter and load the new one")
        tensors, metadata = read_lora(pretrained_model_name_or_path_or_dict)
        if prefix:  # (diffusers-format keys: "transformer." is also stripped when converting)
            tensors = {k.removeprefix(f"{prefix}."): v for k, v in tensors.items()}
        name = adapter_name or f"default_{len(adapter_names(self))}"
        add_adapter(self, convert(tensors, metadata), name)
        return name

    def set_adapters(self, adapter_names: str | list[str], weights: float | list[float] | None = None) -> None:
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if weights is not None and not isinstance(weights, (list, tuple)):
            weights = [weights] * len(names)
        set_active(self, names, weights)

    def get_active_adapters(self) -> list[str]:
        return _active_adapters(self)

    def fuse_lora(
        self, lora_scale: float = 1.0, safe_fusing: bool = False, adapter_names: list[str] | None = None
    ) -> None:
        fuse(self, lora_scale, adapter_names, safe_fusing)

    def unfuse_lora(self) -> None:
        unfuse(self)

    def unload_lora(self) -> None:
        unload(self)

    def delete_adapters(self, adapter_names: str | list[str]) -> None:
        unload(self, [adapter_names] if isinstance(adapter_names, str) else list(adapter_names))

    def disable_lora(self) -> None:
        for layer in lora_layers(self):
            layer.enable_adapters(False)

    def enable_lora(self) -> None:
        for layer in lora_layers(self):
            layer.enable_adapters(True)
