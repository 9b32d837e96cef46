"""diffusers-format model folders: strict, memory-frugal loading and saving, as a mixin.

A folder holds ``config.json`` and either ``diffusion_pytorch_model.safetensors`` or shards listed
by ``diffusion_pytorch_model.safetensors.index.json`` (another weights name where a class says so).
Loading builds the model on the meta device,
checks every key and shape of every shard against it from the safetensors headers alone, and only
then copies tensors one at a time to their device: host memory stays near one tensor, not the
28–57 GB model. Missing, unexpected or wrongly shaped keys are one error that lists them all.
Pickle files are never loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import TransformerConfig, read_json
from .precision import cast_tensors, keeps_fp32

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
# Older checkpoints stored the output modulation table at the top level.
LEGACY_KEY_NAMES = {"scale_shift_table": "norm_out.scale_shift_table"}
_LISTED = 12  # keys named per problem kind in an error message
DEFAULT_SHARD_BYTES = 10 * 2**30


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as it is; the message names the problem."""


def find_model_dir(path: str | Path, subfolder: str | None = None, kind: str = "model") -> Path:
    """The model folder of ``path``: the folder itself or its ``subfolder`` (a pipeline root)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CheckpointError(f"model folder not found: {root}")
    if not root.is_dir():
        raise CheckpointError(f"not a folder: {root}")
    candidates = ([root / subfolder] if subfolder else []) + [root]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    where = f" there or in {subfolder}/" if subfolder else ""
    raise CheckpointError(f"no {kind} in {root}: expected {CONFIG_NAME}{where}")


def _index_name(weights_name: str) -> str:
    parts = weights_name.split(".")
    if len(parts) == 3:  # a variant (diffusers' naming): x.fp16.safetensors → x.safetensors.index.fp16.json
        stem, variant, suffix = parts
        return f"{stem}.{suffix}.index.{variant}.json"
    return f"{weights_name}.index.json"


def _weight_files(folder: Path, weights_name: str) -> list[Path]:
    index = folder / _index_name(weights_name)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc!r})") from None
        files = [folder / str(name) for name in names]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index.name} lists shards that are missing in {folder}: {', '.join(absent)}")
        return files
    single = folder / weights_name
    if single.is_file():
        return [single]
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    hint = f" (found {', '.join(pickles)}: pickle files are not loaded, convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"no {weights_name} or {index.name} in {folder}{hint}")


def require_safetensors(folder: Path) -> None:
    """Refuse a component folder (``vae/``, ``text_encoder/``) that holds pickle weights only."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in (*folder.glob("*.bin"), *folder.glob("*.pt"), *folder.glob("*.pth")))
    hint = f" (found {', '.join(pickles)}: pickle files are not loaded, convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"no safetensors weights in {folder}{hint}")


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
    if leaf in module._buffers:
        module._buffers[leaf] = tensor
    else:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)


def _read_config(folder: Path) -> dict:
    try:
        data = read_json(folder / CONFIG_NAME)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{folder / CONFIG_NAME}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def load_weights(
    model: nn.Module,
    folder: Path,
    dtype: torch.dtype,
    device,
    weights_name: str = WEIGHTS_NAME,
    keep_fp32=lambda name: False,
    optional: frozenset = frozenset(),
) -> nn.Module:
    """Fill a meta-device ``model`` from ``folder``: every key and shape checked from the headers
    first, then tensors copied one at a time to ``device`` (``keep_fp32`` names stay fp32).
    ``optional`` keys may be absent from the files; they are zero-filled for the caller to set."""
    state = model.state_dict(keep_vars=True)
    if len(state) != sum(1 for _ in model.parameters()) + sum(1 for _ in model.buffers()):
        raise AssertionError(f"{type(model).__name__} holds non-persistent buffers: they would stay on the meta device")
    stored = StoredWeights(folder, weights_name)
    shapes = stored.shapes()
    expected = {name: tuple(t.shape) for name, t in state.items()}
    required = {k: v for k, v in expected.items() if k not in optional or k in shapes}
    check_keys(required, shapes, str(folder))

    def target(name: str, tensor: torch.Tensor) -> torch.dtype:
        if not tensor.is_floating_point():
            return tensor.dtype
        return torch.float32 if keep_fp32(name) else dtype

    for name, tensor in stored.tensors():
        # Always a fresh allocation: safetensors (0.8) hands out CPU tensors at 8-byte-aligned addresses,
        # and the CPU GEMM's last bits depend on the weight's alignment, so a no-op ``to`` would make the
        # same weights compute differently from a model whose parameters PyTorch allocated itself.
        _assign(model, name, tensor.to(device=device, dtype=target(name, tensor), copy=True))
    for name in sorted(set(expected) - set(shapes)):  # optional keys absent from the file: filled by the caller
        _assign(model, name, torch.zeros(expected[name], dtype=target(name, state[name]), device=device))
    return model.eval()


class StoredWeights:
    """A weights folder read one tensor at a time (canonical key names; headers read up front): no
    loader ever holds a whole model in host memory."""

    def __init__(self, folder: Path, weights_name: str = WEIGHTS_NAME):
        self.folder = folder
        self.entries = _stored_shapes(_weight_files(folder, weights_name))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (_, _, shape) in self.entries.items()}

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(canonical name, tensor) for every stored tensor, each file opened once."""
        by_file: dict[Path, list[tuple[str, str]]] = {}
        for name, (file, key, _) in self.entries.items():
            by_file.setdefault(file, []).append((name, key))
        for file, names in by_file.items():
            with _open(file) as handle:
                for name, key in names:
                    try:
                        tensor = handle.get_tensor(key)
                    except Exception as exc:  # a truncated file passes the header check and fails here
                        raise CheckpointError(f"cannot read {key!r} from {file}: damaged file ({exc})") from None
                    yield name, tensor


def read_model_config(path: str | Path, kind: str = "model") -> tuple[Path, dict]:
    """The model folder of ``path`` and its parsed ``config.json``."""
    folder = find_model_dir(path, None, kind)
    return folder, _read_config(folder)


def save_weights(
    state: dict[str, torch.Tensor],
    folder: Path,
    weights_name: str = WEIGHTS_NAME,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> None:
    """Safetensors weights, sharded with an index above ``max_shard_bytes``; each file written atomically."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    index_path = folder / _index_name(weights_name)
    if len(shards) == 1:
        _atomic_save(shards[0], folder / weights_name)
        index_path.unlink(missing_ok=True)
        return
    stem = weights_name.removesuffix(".safetensors")
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, folder / name)
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    _atomic_write_text(index_path, json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (folder / weights_name).unlink(missing_ok=True)


def _variant_name(weights_name: str, variant: str | None) -> str:
    """diffusers' variant file name: diffusion_pytorch_model.fp16.safetensors for variant "fp16"."""
    if not variant:
        return weights_name
    stem, dot, suffix = weights_name.rpartition(".")
    return f"{stem}.{variant}.{suffix}"


def parse_size(size: int | str) -> int:
    """Bytes from an int or a size like "5GB", "500MB", "10KiB"."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", str(size), re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size must be bytes or a size like '5GB', got {size!r}")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** "_KMGT".index(unit.upper() or "_"))


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``cast`` for an ``nn.Module`` with a JSON config.

    A class says how its config is read and written (``build_from_config`` / ``config_json``),
    which subfolder of a pipeline root holds it, its weights file name and which tensors keep fp32.
    """

    subfolder: str | None = None
    kind: str = "model"  # named in error messages
    weights_name: str = WEIGHTS_NAME
    default_dtype: torch.dtype = torch.float32

    @classmethod
    def build_from_config(cls, data: dict) -> nn.Module:
        """A model with random weights from the folder's ``config.json`` (called on the meta device)."""
        raise NotImplementedError

    def config_json(self) -> dict:
        raise NotImplementedError

    @staticmethod
    def keeps_fp32(name: str) -> bool:
        return False

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        *,
        torch_dtype: torch.dtype | None = None,
        subfolder: str | None = None,
        variant: str | None = None,
        low_cpu_mem_usage: bool = True,
        use_safetensors: bool | None = None,
        **unsupported,
    ):
        """Load a model folder, or a pipeline root holding it in its ``subfolder``. diffusers' keywords
        are taken too: ``torch_dtype`` (= ``dtype``), ``subfolder``, ``variant`` (weights named
        ``…{variant}.safetensors``), ``low_cpu_mem_usage`` (always: tensors go one at a time to the
        device); safetensors only, and a keyword that would download or change loading is an error."""
        if unsupported:
            raise TypeError(f"from_pretrained: unsupported keyword(s) {', '.join(sorted(unsupported))}")
        if use_safetensors is False:
            raise CheckpointError("only safetensors weights are read (use_safetensors=False is not supported)")
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise TypeError("give dtype or torch_dtype, not both")
        folder = find_model_dir(path, subfolder or cls.subfolder, cls.kind)
        data = _read_config(folder)
        try:
            with torch.device("meta"):
                model = cls.build_from_config(data)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from None
        weights_name = _variant_name(cls.weights_name, variant)
        return load_weights(
            model, folder, dtype or torch_dtype or cls.default_dtype, device, weights_name, cls.keeps_fp32
        )

    def save_pretrained(
        self,
        path: str | Path,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        *,
        max_shard_size: int | str | None = None,
        variant: str | None = None,
        safe_serialization: bool = True,
        is_main_process: bool = True,
    ) -> None:
        """Write ``config.json`` and safetensors weights, sharded with an index above ``max_shard_bytes``
        (or diffusers' ``max_shard_size``, bytes or "5GB"/"500MB")."""
        if not safe_serialization:
            raise ValueError("only safetensors weights are written (safe_serialization=False is not supported)")
        if not is_main_process:
            return
        if max_shard_size is not None:
            max_shard_bytes = parse_size(max_shard_size)
        state = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        if any("lora_" in name or ".base_layer." in name for name in state):
            raise ValueError("the model holds LoRA adapters: fuse_lora() then unload_lora() to save the merged weights")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(state, folder, _variant_name(self.weights_name, variant), max_shard_bytes)
        _atomic_write_text(folder / CONFIG_NAME, json.dumps(self.config_json(), indent=2))

    def cast(self, dtype: torch.dtype):
        """Cast to ``dtype`` except the tensors the class keeps in fp32."""
        return cast_tensors(self, dtype, self.keeps_fp32)


WAN_CLASS_NAME = "WanTransformer3DModel"
MEMORY_PATCH_KEYS = frozenset(
    f"patch_{part}.{kind}" for part in ("short", "mid", "long") for kind in ("weight", "bias")
)
_WAN_SHARED_KEYS = (
    "patch_size",
    "num_attention_heads",
    "attention_head_dim",
    "in_channels",
    "out_channels",
    "text_dim",
    "freq_dim",
    "ffn_dim",
    "num_layers",
    "cross_attn_norm",
    "qk_norm",
    "eps",
)


def config_from_wan(data: dict) -> TransformerConfig:
    """The Helios config of a Wan2.1 T2V transformer: same backbone, Helios switches at their defaults."""
    if data.get("image_dim") or data.get("added_kv_proj_dim"):
        raise CheckpointError("this Wan transformer has an image branch (I2V); Helios starts from a Wan T2V model")
    head = data.get("attention_head_dim", 128)
    spatial = 2 * (head // 6)  # Wan splits each head's rotary dims as t / h / w = rest / 2⌊d/6⌋ / 2⌊d/6⌋
    values = {k: data[k] for k in _WAN_SHARED_KEYS if k in data}
    return TransformerConfig(**values, rope_dim=(head - 2 * spatial, spatial, spatial))


def wan_folder_config(folder: Path, data: dict) -> TransformerConfig:
    """``config_from_wan`` of a folder's parsed config, a bad value named with the file."""
    try:
        return config_from_wan(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from None


class TransformerCheckpointMixin(PretrainedMixin):
    """Helios transformer folders (diffusers' ``HeliosTransformer3DModel`` layout) and the Wan2.1 start."""

    subfolder = "transformer"
    kind = "Helios transformer"
    default_dtype = torch.float32  # as diffusers: give dtype=torch.bfloat16 for the released weights' own

    @classmethod
    def build_from_config(cls, data: dict) -> nn.Module:
        return cls(TransformerConfig.from_dict(data))

    def config_json(self) -> dict:
        return self.config.to_dict()

    keeps_fp32 = staticmethod(keeps_fp32)

    @classmethod
    def from_wan(cls, path: str | Path, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"):
        """A Wan2.1 T2V transformer folder as a Helios transformer (the stage-1 starting point, paper
        §5.1): every Wan key must be there; the memory patches, which Wan lacks, are initialised
        *after* loading as average-pool copies of the loaded patch embedding."""
        from .memory import init_memory_from_patch_embedding

        folder = find_model_dir(path, cls.subfolder, cls.kind)
        data = _read_config(folder)
        if data.get("_class_name") != WAN_CLASS_NAME:
            raise CheckpointError(f"{folder} holds {data.get('_class_name')!r}, not a {WAN_CLASS_NAME}")
        config = wan_folder_config(folder, data)
        with torch.device("meta"):
            model = cls(config)
        load_weights(model, folder, dtype, device, cls.weights_name, cls.keeps_fp32, optional=MEMORY_PATCH_KEYS)
        init_memory_from_patch_embedding(model, model.patch_embedding)
        return model


def _atomic_save(tensors: dict[str, torch.Tensor], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, target)


def _atomic_write_text(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
