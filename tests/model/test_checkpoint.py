"""Strict loading: every kind of bad checkpoint gives one clear error naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helios import CheckpointError, HeliosTransformer
from helios.model.checkpoint import WEIGHTS_NAME


@pytest.fixture
def folder(tiny_reference_dir, tmp_path):
    target = tmp_path / "transformer"
    shutil.copytree(tiny_reference_dir, target)
    return target


def rewrite_weights(folder, edit):
    path = folder / WEIGHTS_NAME
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


def test_missing_key_is_named(folder):
    rewrite_weights(folder, lambda s: s.pop("blocks.1.attn2.norm_k.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing keys \(blocks\.1\.attn2\.norm_k\.weight\)"):
        HeliosTransformer.from_pretrained(folder)


def test_unexpected_key_is_named(folder):
    rewrite_weights(folder, lambda s: s.update({"blocks.0.attn1.surprise": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(blocks\.0\.attn1\.surprise\)"):
        HeliosTransformer.from_pretrained(folder)


def test_wrong_shape_is_an_error_not_a_skip(folder):
    rewrite_weights(folder, lambda s: s.update({"proj_out.bias": torch.zeros(65)}))
    with pytest.raises(
        CheckpointError, match=r"wrongly shaped keys \(proj_out\.bias: checkpoint \[65\] vs model \[64\]\)"
    ):
        HeliosTransformer.from_pretrained(folder)


def test_all_problems_reported_at_once(folder):
    def edit(state):
        state.pop("proj_out.weight")
        state["extra"] = torch.zeros(1)
        state["proj_out.bias"] = torch.zeros(2)

    rewrite_weights(folder, edit)
    with pytest.raises(CheckpointError) as info:
        HeliosTransformer.from_pretrained(folder)
    message = str(info.value)
    assert "missing keys (proj_out.weight)" in message
    assert "unexpected keys (extra)" in message
    assert "wrongly shaped keys (proj_out.bias" in message
    assert "\n" not in message


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="model folder not found: .*nowhere"):
        HeliosTransformer.from_pretrained(tmp_path / "nowhere")


def test_folder_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="no Helios transformer in .*expected config.json"):
        HeliosTransformer.from_pretrained(tmp_path)


def test_missing_weights_file(folder):
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        HeliosTransformer.from_pretrained(folder)


def test_pickle_only_folder_is_refused(folder):
    (folder / WEIGHTS_NAME).unlink()
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle files are not loaded"):
        HeliosTransformer.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors(folder, damage):
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot read .*corrupt or not a safetensors file"):
        HeliosTransformer.from_pretrained(folder)


def test_unknown_config_key(folder):
    config = json.loads((folder / "config.json").read_text())
    config["num_layerz"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown Helios transformer config keys: num_layerz"):
        HeliosTransformer.from_pretrained(folder)


def test_sharded_index_with_missing_shard(folder, tmp_path):
    model = HeliosTransformer.from_pretrained(folder, dtype=torch.float32)
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_bytes=64 * 1024)
    victim = sorted(sharded.glob("*-of-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"lists shards that are missing .*{victim.name}"):
        HeliosTransformer.from_pretrained(sharded)


def test_legacy_top_level_scale_shift_table_is_accepted(folder):
    def rename(state):
        state["scale_shift_table"] = state.pop("norm_out.scale_shift_table")

    expected = load_file(folder / WEIGHTS_NAME)["norm_out.scale_shift_table"]
    rewrite_weights(folder, rename)
    model = HeliosTransformer.from_pretrained(folder, dtype=torch.float32)
    assert torch.equal(model.norm_out.scale_shift_table.data, expected)


def test_pipeline_root_with_transformer_subfolder(folder):
    model = HeliosTransformer.from_pretrained(folder.parent, dtype=torch.float32)
    assert model.config.num_layers == 2


def test_dtype_policy_and_device(folder):
    model = HeliosTransformer.from_pretrained(folder, dtype=torch.bfloat16, device="cpu")
    kept = {n for n, p in model.named_parameters() if p.dtype == torch.float32}
    assert kept == {
        *(f"condition_embedder.time_embedder.linear_{i}.{k}" for i in (1, 2) for k in ("weight", "bias")),
        "norm_out.scale_shift_table",
        *(f"blocks.{b}.{name}" for b in range(2) for name in ("scale_shift_table", "norm2.weight", "norm2.bias")),
    }
    assert model.dtype == torch.bfloat16
    assert not any(p.is_meta for p in model.parameters())
    assert not model.training


def test_load_is_frugal_loads_one_tensor_at_a_time(folder, monkeypatch):
    """Tensors are read one by one from the file and never gathered into a full state dict."""
    from safetensors import safe_open as real_safe_open

    import helios.model.checkpoint as checkpoint

    live = {"max": 0, "now": 0}

    class CountingHandle:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def keys(self):
            return self.handle.keys()

        def get_slice(self, key):
            return self.handle.get_slice(key)

        def get_tensor(self, key):
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
            tensor = self.handle.get_tensor(key)
            live["now"] -= 1
            return tensor

    monkeypatch.setattr(checkpoint, "safe_open", lambda *a, **k: CountingHandle(real_safe_open(*a, **k)))
    HeliosTransformer.from_pretrained(folder)
    assert live["max"] == 1


def test_wan_t2v_folder_loads_as_helios_and_matches_wan_without_history(tmp_path):
    """Helios is Wan2.1 plus history machinery: without history its output is Wan's."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan = WanTransformer3DModel(
        num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=64, num_layers=2
    ).eval()
    wan.save_pretrained(tmp_path / "wan")
    model = HeliosTransformer.from_wan(tmp_path / "wan", dtype=torch.float32)
    assert model.config.rope_dim == (4, 4, 4)
    assert torch.equal(model.patch_short.weight, model.patch_embedding.weight)  # initialised after loading
    assert torch.allclose(model.patch_mid.weight.sum(dim=(2, 3, 4)), model.patch_embedding.weight.sum(dim=(2, 3, 4)))
    hidden, text = torch.randn(1, 16, 3, 8, 8), torch.randn(1, 7, 32)
    with torch.no_grad():
        expected = wan(hidden, torch.tensor([400]), text).sample
        got = model(hidden, torch.tensor([400]), text)
    assert (got - expected).abs().max().item() < 1e-4  # Wan builds its RoPE table in float64, we in float32
    with pytest.raises(CheckpointError, match="not a WanTransformer3DModel"):
        HeliosTransformer.from_wan(folder_of_helios(tmp_path))


def folder_of_helios(tmp_path):
    from ..conftest import build_reference

    build_reference().save_pretrained(tmp_path / "helios")
    return tmp_path / "helios"


def test_loaded_weights_get_aligned_storage_of_their_own(folder):
    """safetensors 0.8 returns CPU tensors at 8-byte-aligned addresses, and the CPU GEMM's last bits
    depend on a weight's alignment: loaded parameters must be fresh allocations (64-byte aligned, no
    storage shared with the file's buffers), or the same weights compute differently from a model
    PyTorch allocated (the diffusers pipeline parity caught it)."""
    model = HeliosTransformer.from_pretrained(folder)
    pointers = [p.data_ptr() for p in model.parameters()]
    assert all(pointer % 64 == 0 for pointer in pointers)
    assert len(set(pointers)) == len(pointers)
    layer = model.condition_embedder.time_embedder.linear_1
    features = torch.randn(1, layer.in_features)
    with torch.no_grad():
        assert torch.equal(layer(features), torch.nn.functional.linear(features, layer.weight.clone(), layer.bias))
