"""LoRA at inference against diffusers' own loader (peft) on identical tiny weights: diffusers-, Wan-
and musubi-format files, several adapters with weights, the per-call scale, fuse / unfuse / unload."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from helios import HeliosTransformer
from helios.model.lora import LoraFormatError

from .test_transformer_parity import run_both

TOLERANCE = 1e-5

# (Wan name, diffusers name, in, out) of the tiny model (dim 32, ffn 64)
MODULES = [
    ("blocks.0.self_attn.q", "blocks.0.attn1.to_q", 32, 32),
    ("blocks.1.cross_attn.o", "blocks.1.attn2.to_out.0", 32, 32),
    ("blocks.0.ffn.0", "blocks.0.ffn.net.0.proj", 32, 64),
    ("blocks.1.ffn.2", "blocks.1.ffn.net.2", 64, 32),
    ("head.head", "proj_out", 32, 64),
]


def wan_lora(seed: int, rank: int = 4, alpha: float = 8.0, bias: bool = False) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for wan, _, fan_in, fan_out in MODULES:
        state[f"diffusion_model.{wan}.lora_down.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.3
        state[f"diffusion_model.{wan}.lora_up.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.3
        if wan.startswith("blocks."):  # (diffusers' converter refuses an alpha outside the blocks)
            state[f"diffusion_model.{wan}.alpha"] = torch.tensor(alpha)
        if bias and "ffn" in wan:
            state[f"diffusion_model.{wan}.diff_b"] = torch.randn(fan_out, generator=generator) * 0.1
    return state


def diffusers_lora(seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for _, name, fan_in, fan_out in MODULES:
        state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.3
        state[f"transformer.{name}.lora_B.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.3
    return state


def musubi_from_wan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        module, part = key.removeprefix("diffusion_model.").rsplit(".", 1) if key.endswith("alpha") else (None, None)
        if module is None:
            stem = key.removeprefix("diffusion_model.")
            for suffix in (".lora_down.weight", ".lora_up.weight", ".diff_b"):
                if stem.endswith(suffix):
                    module, part = stem.removesuffix(suffix), suffix.lstrip(".")
        out[f"lora_unet_{module.replace('.', '_')}.{part}"] = value
    return out


@pytest.fixture()
def pair(tiny_reference_dir):
    from diffusers import HeliosTransformer3DModel

    reference = HeliosTransformer3DModel.from_pretrained(tiny_reference_dir).eval()
    ours = HeliosTransformer.from_pretrained(tiny_reference_dir, dtype=torch.float32)
    return reference, ours


def _reference_load(reference, state, name):
    from diffusers.loaders.lora_pipeline import HeliosLoraLoaderMixin

    # (cloned: diffusers' Wan converter scales the caller's cross-attention and FFN tensors in place)
    copied = {k: v.clone() for k, v in state.items()}
    reference.load_lora_adapter(HeliosLoraLoaderMixin.lora_state_dict(copied), adapter_name=name)


def _close(got, expected):
    assert ((got - expected).norm() / expected.norm()).item() < TOLERANCE


def test_diffusers_format_file_equals_diffusers_loader(pair, tmp_path):
    reference, ours = pair
    plain, _ = run_both(reference, ours)
    path = tmp_path / "pytorch_lora_weights.safetensors"
    save_file(diffusers_lora(0), str(path))
    _reference_load(reference, diffusers_lora(0), "a")
    assert ours.load_lora_adapter(str(path), adapter_name="a") == "a"
    got, expected = run_both(reference, ours)
    _close(got, expected)
    assert (got - plain).abs().max() > 1e-3  # the adapter changes the output


@pytest.mark.parametrize("bias", [False, True], ids=["alpha", "alpha+diff_b"])
def test_wan_and_musubi_formats_equal_diffusers_conversion(pair, bias):
    reference, ours = pair
    state = wan_lora(1, bias=bias)
    _reference_load(reference, state, "wan")
    ours.load_lora_adapter(state, adapter_name="wan")
    got, expected = run_both(reference, ours)
    _close(got, expected)
    ours.unload_lora()
    ours.load_lora_adapter(musubi_from_wan(state), adapter_name="musubi")
    assert torch.equal(run_both(reference, ours)[0], got)  # the same LoRA in musubi's names
    # an alpha outside the blocks (which diffusers' converter refuses) scales by alpha / rank like the others
    ours.unload_lora()
    ours.load_lora_adapter({**state, "diffusion_model.head.head.alpha": torch.tensor(2.0)}, adapter_name="alpha2")
    halved = {
        **state,
        "diffusion_model.head.head.lora_up.weight": state["diffusion_model.head.head.lora_up.weight"] / 2,
    }
    with_alpha = run_both(reference, ours)[0]
    ours.unload_lora()
    ours.load_lora_adapter(halved, adapter_name="prescaled")
    assert torch.allclose(run_both(reference, ours)[0], with_alpha, atol=1e-6)


def test_several_adapters_weights_scale_fuse_unfuse_unload(pair):
    reference, ours = pair
    plain = run_both(reference, ours)[0]
    for name, state in (("one", wan_lora(2)), ("two", diffusers_lora(3, rank=2))):
        _reference_load(reference, state, name)
        ours.load_lora_adapter(state, adapter_name=name)
    for model in (reference, ours):
        model.set_adapters(["one", "two"], weights=[0.5, 1.5])
    assert ours.get_active_adapters() == ["one", "two"]
    weighted, expected = run_both(reference, ours)
    _close(weighted, expected)
    scaled, expected = run_both(reference, ours, attention_kwargs={"scale": 0.3})
    _close(scaled, expected)
    ours.fuse_lora(lora_scale=0.3)  # the same change folded into the weights
    fused = run_both(reference, ours)[0]
    assert ((fused - scaled).norm() / scaled.norm()).item() < TOLERANCE
    ours.unfuse_lora()
    assert ((run_both(reference, ours)[0] - weighted).norm() / weighted.norm()).item() < TOLERANCE
    ours.set_adapters("one")
    reference.set_adapters("one")
    _close(*run_both(reference, ours))
    ours.unload_lora()
    assert not any("lora" in n for n, _ in ours.named_parameters())
    assert torch.allclose(run_both(reference, ours)[0], plain, atol=1e-6)


@pytest.mark.parametrize(
    "state, message",
    [
        ({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 32)}, "only one of its down/up"),
        ({"transformer.blocks.0.attn1.to_q.weight": torch.zeros(32, 32)}, "unexpected key"),
        (
            {
                "diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight": torch.zeros(4, 32),
                "diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight": torch.zeros(32, 4),
            },
            "image cross-attention",
        ),
        (
            {
                "transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 5120),
                "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(5120, 4),
            },
            "another model size",
        ),
        (
            {
                "transformer.blocks.7.attn1.to_q.lora_A.weight": torch.zeros(4, 32),
                "transformer.blocks.7.attn1.to_q.lora_B.weight": torch.zeros(32, 4),
            },
            "not a linear layer of this model",
        ),
        ({"lora_unet_blocks_0_self_attn_zz.lora_down.weight": torch.zeros(4, 32)}, "unknown Wan block module"),
        ("/nowhere/lora.safetensors", "LoRA file not found"),
    ],
)
def test_bad_loras_are_refused_by_name_and_change_nothing(pair, state, message):
    _, ours = pair
    before = {n: p.clone() for n, p in ours.state_dict().items()}
    with pytest.raises(LoraFormatError, match=message):
        ours.load_lora_adapter(state)
    assert ours.state_dict().keys() == before.keys()
    assert all(torch.equal(p, before[n]) for n, p in ours.state_dict().items())


def test_attention_kwargs_other_than_scale_are_refused(pair):
    reference, ours = pair
    with pytest.raises(ValueError, match="only 'scale'"):
        run_both(reference, ours, attention_kwargs={"window": 3})
