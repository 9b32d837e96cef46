"""diffusers-format transformer folders: strict, memory-frugal loading and saving.

A folder holds ``config.json`` and either ``diffusion_pytorch_model.safetensors`` or shards listed
by ``diffusion_pytorch_model.safetensors.index.json``. Loading builds the model on the meta device,
checks every key and shape of every shard against it from the safetensors headers alone, and only
then copies tensors one at a time to their device: host memory stays near one tensor, not the
28–57 GB model. Missing, unexpected or wrongly shaped keys are one error that lists them all.
Pickle files are never loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import TransformerConfig, read_json
from .transformer import HeliosTransformer, keeps_fp32

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
# Older checkpoints stored the output modulation table at the top level.
LEGACY_KEY_NAMES = {"scale_shift_table": "norm_out.scale_shift_table"}
_LISTED = 12  # keys named per problem kind in an error message


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as it is; the message names the problem."""


def find_transformer_dir(path: str | Path) -> Path:
    """The transformer folder of ``path``: the folder itself or its ``transformer/`` subfolder."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CheckpointError(f"model folder not found: {root}")
    if not root.is_dir():
        raise CheckpointError(f"not a folder: {root}")
    for candidate in (root / "transformer", root):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise CheckpointError(f"no Helios transformer in {root}: expected {CONFIG_NAME} there or in transformer/")


def _weight_files(folder: Path) -> list[Path]:
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc!r})") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index.name} lists shards that are missing in {folder}: {', '.join(absent)}")
        return files
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return [single]
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    hint = f" (found {', '.join(pickles)}: pickle files are not loaded, convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {folder}{hint}")


def _open(file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"cannot read {file}: corrupt or not a safetensors file ({exc})") from None


def _stored_shapes(files: list[Path]) -> dict[str, tuple[Path, str, tuple[int, ...]]]:
    """Canonical key → (file, key as stored, shape), read from the headers only."""
    found: dict[str, tuple[Path, str, tuple[int, ...]]] = {}
    for file in files:
        with _open(file) as handle:
            for stored in handle.keys():
                name = LEGACY_KEY_NAMES.get(stored, stored)
                if name in found:
                    raise CheckpointError(f"key {name!r} appears twice (in {found[name][0].name} and {file.name})")
                found[name] = (file, stored, tuple(handle.get_slice(stored).get_shape()))
    return found


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f"{len(names)} {kind} ({shown}{more})"


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str) -> None:
    """Raise one :class:`CheckpointError` naming every missing, unexpected and mis-shaped key."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {list(found[k])} vs model {list(expected[k])}"
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k])
    )
    problems = [
        _listing(kind, names)
        for kind, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrongly shaped keys", wrong))
        if names
    ]
    if problems:
        raise CheckpointError(f"{where} does not match the model config: " + "; ".join(problems))


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)


WAN_CLASS_NAME = "WanTransformer3DModel"
MEMORY_PATCH_KEYS = frozenset(f"patch_{part}.{kind}" for part in ("short", "mid", "long") for kind in ("weight", "bias"))
_WAN_SHARED_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                    "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps")


def config_from_wan(data: dict) -> TransformerConfig:
    """The Helios config of a Wan2.1 T2V transformer: same backbone, Helios switches at their defaults."""
    if data.get("image_dim") or data.get("added_kv_proj_dim"):
        raise CheckpointError("this Wan transformer has an image branch (I2V); Helios starts from a Wan T2V model")
    head = data.get("attention_head_dim", 128)
    spatial = 2 * (head // 6)  # Wan splits each head's rotary dims as t / h / w = rest / 2⌊d/6⌋ / 2⌊d/6⌋
    values = {k: data[k] for k in _WAN_SHARED_KEYS if k in data}
    return TransformerConfig(**values, rope_dim=(head - 2 * spatial, spatial, spatial))


def _read_config(folder: Path) -> dict:
    try:
        return read_json(folder / CONFIG_NAME)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def load_transformer(
    cls: type[HeliosTransformer],
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> HeliosTransformer:
    folder = find_transformer_dir(path)
    try:
        config = TransformerConfig.from_dict(_read_config(folder))
    except ValueError as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from None
    return _load(cls, folder, config, dtype, device)


def load_wan_transformer(
    cls: type[HeliosTransformer],
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> HeliosTransformer:
    """A Wan2.1 T2V transformer folder as a Helios transformer (the stage-1 starting point, paper §5.1):
    every Wan key must be there; the memory patches, which Wan lacks, are initialised *after* loading
    as average-pool copies of the loaded patch embedding."""
    from .memory import init_memory_from_patch_embedding

    folder = find_transformer_dir(path)
    data = _read_config(folder)
    if data.get("_class_name") != WAN_CLASS_NAME:
        raise CheckpointError(f"{folder} holds {data.get('_class_name')!r}, not a {WAN_CLASS_NAME}")
    model = _load(cls, folder, config_from_wan(data), dtype, device, optional=MEMORY_PATCH_KEYS)
    init_memory_from_patch_embedding(model, model.patch_embedding)
    return model


def _load(cls, folder: Path, config: TransformerConfig, dtype, device, optional: frozenset = frozenset()):
    with torch.device("meta"):
        model = cls(config)
    if any(True for _ in model.buffers()):
        raise AssertionError("HeliosTransformer must not hold buffers: they would stay on the meta device")
    files = _weight_files(folder)
    stored = _stored_shapes(files)
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    required = {k: v for k, v in expected.items() if k not in optional or k in stored}
    check_keys(required, {k: v[2] for k, v in stored.items()}, str(folder))

    by_file: dict[Path, list[tuple[str, str]]] = {}
    for name, (file, key, _) in stored.items():
        by_file.setdefault(file, []).append((name, key))
    for file, names in by_file.items():
        with _open(file) as handle:
            for name, key in names:
                tensor = handle.get_tensor(key)
                target = torch.float32 if keeps_fp32(name) else dtype
                if tensor.is_floating_point():
                    tensor = tensor.to(device=device, dtype=target)
                else:
                    tensor = tensor.to(device=device)
                _assign(model, name, tensor)
    for name in sorted(set(expected) - set(stored)):  # optional keys absent from the file: filled by the caller
        _assign(model, name, torch.zeros(expected[name], dtype=torch.float32 if keeps_fp32(name) else dtype, device=device))
    return model.eval()


def save_transformer(model: HeliosTransformer, path: str | Path, max_shard_bytes: int = 10 * 2**30) -> None:
    """Write ``config.json`` and safetensors weights (sharded with an index above ``max_shard_bytes``)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes

    if len(shards) == 1:
        _atomic_save(shards[0], folder / WEIGHTS_NAME)
        (folder / INDEX_NAME).unlink(missing_ok=True)
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
            _atomic_save(shard, folder / name)
            weight_map.update({key: name for key in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        _atomic_write_text(folder / INDEX_NAME, json.dumps(index, indent=2))
        (folder / WEIGHTS_NAME).unlink(missing_ok=True)
    _atomic_write_text(folder / CONFIG_NAME, json.dumps(model.config.to_dict(), indent=2))


def _atomic_save(tensors: dict[str, torch.Tensor], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, target)


def _atomic_write_text(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
