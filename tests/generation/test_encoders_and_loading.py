"""UMT5 and Wan VAE adapters against diffusers, and loading a diffusers-layout model folder."""

from __future__ import annotations

import json

import pytest
import torch

from helios import HeliosPipeline
from helios.encoders import TextEncoder, VideoCodec
from helios.encoders.text import UMT5TextEncoder, clean_prompt
from helios.encoders.video import WanVideoCodec
from helios.generation.loading import ModelFolderError, sampler_from_configs

from .fixtures import tiny_model_folder, tiny_tokenizer, tiny_umt5, tiny_vae


def test_umt5_embeddings_match_diffusers():
    from diffusers import HeliosPyramidPipeline

    tokenizer, model = tiny_tokenizer(), tiny_umt5()
    prompts = ["a red circle moves left", "  the   blue square &amp; on white background  "]
    reference = HeliosPyramidPipeline(tokenizer, model, None, None, None)
    expected = reference._get_t5_prompt_embeds(prompts, max_sequence_length=16, device=torch.device("cpu"))[0]
    ours = UMT5TextEncoder(tokenizer, model, max_length=16).encode(prompts)
    assert ours.shape == (2, 16, 32)
    assert (ours - expected).abs().max().item() < 1e-5  # diffusers runs with autograd on, we without
    assert ours[0, 6:].abs().sum() == 0 and ours[0, :6].abs().sum() > 0  # 5 words + eos, then zeros
    # a model the caller is training keeps its mode; the embeddings are still dropout-free
    model.train()
    encoder = UMT5TextEncoder(tokenizer, model, max_length=16)
    assert torch.equal(encoder.encode(prompts), ours) and model.training


def test_prompt_cleaning():
    assert clean_prompt("  a&amp;amp;b \n\t c ") == "a&b c"


def test_wan_codec_geometry_and_normalisation():
    vae = tiny_vae()
    codec = WanVideoCodec(vae)
    assert isinstance(codec, VideoCodec)
    video = torch.rand(1, 3, 33, 64, 64) * 2 - 1
    latents = codec.encode(video, torch.Generator().manual_seed(0))
    assert latents.shape == (1, 16, 9, 8, 8)
    raw = vae.encode(video).latent_dist.sample(generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    assert torch.allclose(latents, (raw - mean) / std, atol=1e-5)
    decoded = codec.decode(latents)
    assert decoded.shape == (1, 3, 33, 64, 64)
    assert torch.allclose(decoded, vae.decode(raw).sample, atol=1e-5)
    codec.channels_last(True)
    assert vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(codec.decode(latents), decoded, atol=1e-4)


def test_pipeline_folder_loads_in_ours_and_in_diffusers(tmp_path):
    from diffusers import HeliosPyramidPipeline

    folder = tiny_model_folder(tmp_path / "Helios-Tiny")
    ours = HeliosPipeline.from_pretrained(folder, dtype=torch.float32, device="cpu")
    assert isinstance(ours.text_encoder, TextEncoder)
    assert ours.sampler.name == "helios-distilled" and ours.sampler.shift.kind == "linear"
    theirs = HeliosPyramidPipeline.from_pretrained(folder)
    ours_weights = dict(ours.transformer.named_parameters())
    for name, param in theirs.transformer.named_parameters():
        assert torch.equal(ours_weights[name], param), name
    ours.height = ours.width = 64
    video = ours.generate("a red circle moves right", num_frames=33, steps=1)
    assert video.frames.shape == (33, 64, 64, 3)


def test_mid_folder_gets_the_mid_sampler(tmp_path):
    folder = tiny_model_folder(tmp_path / "Helios-Tiny-Mid", distilled=False)
    pipe = HeliosPipeline.from_pretrained(folder, dtype=torch.float32, device="cpu")
    assert pipe.sampler.name == "helios-mid" and pipe.sampler.cfg_zero_star


def test_sampler_from_configs_reads_the_scheduler_shift():
    settings = sampler_from_configs(
        {"_class_name": "HeliosPyramidPipeline", "is_distilled": True},
        {"use_dynamic_shifting": False, "scheduler_type": "dmd"},
    )
    assert settings.sampler == "dmd" and settings.shift.kind is None
    base = sampler_from_configs(
        {"_class_name": "HeliosPipeline"}, {"stages": 1, "use_dynamic_shifting": True, "time_shift_type": "exponential"}
    )
    assert base.pyramid_steps is None and base.shift.kind == "exponential"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "model_index.json").unlink(), "model_index.json is missing"),
        (lambda root: __import__("shutil").rmtree(root / "vae"), "lacks vae/"),
        (lambda root: (root / "model_index.json").write_text("{not json"), "model_index.json: not valid JSON"),
    ],
)
def test_broken_model_folders_are_clear_errors(tmp_path, damage, message):
    folder = tiny_model_folder(tmp_path / "m")
    damage(folder)
    with pytest.raises(ModelFolderError, match=message):
        HeliosPipeline.from_pretrained(folder, device="cpu")


def test_missing_folder_and_missing_default_model(tmp_path):
    with pytest.raises(ModelFolderError, match="model folder not found"):
        HeliosPipeline.from_pretrained(tmp_path / "nope", device="cpu")


def test_scheduler_config_written_by_diffusers_is_json(tmp_path):
    folder = tiny_model_folder(tmp_path / "m")
    assert (
        json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "HeliosDMDScheduler"
    )


@pytest.mark.parametrize("component", ["vae", "text_encoder"])
def test_vae_and_text_encoder_load_safetensors_only(tmp_path, component):
    from helios.model.checkpoint import CheckpointError

    from .fixtures import tiny_umt5, tiny_vae

    folder = tiny_model_folder(tmp_path / "m")
    __import__("shutil").rmtree(folder / component)
    model = tiny_vae() if component == "vae" else tiny_umt5()
    model.save_pretrained(folder / component)
    for weights in (folder / component).glob("*.safetensors"):  # the same weights as a pickle file only
        weights.unlink()
    name = "diffusion_pytorch_model.bin" if component == "vae" else "pytorch_model.bin"
    __import__("torch").save(model.state_dict(), folder / component / name)
    with pytest.raises(CheckpointError, match=f"no safetensors weights in .*{component}.*pickle files are not loaded"):
        HeliosPipeline.from_pretrained(folder, device="cpu", dtype=__import__("torch").float32)


def test_a_wan_layout_pipeline_saves_and_loads_back(tmp_path):
    source = tiny_model_folder(tmp_path / "source", distilled=False)
    pipe = HeliosPipeline.from_pretrained(source, dtype=torch.float32, device="cpu")
    assert set(pipe.components) == {"transformer", "text_encoder", "codec"}
    assert pipe.to("cpu") is pipe
    options = dict(num_frames=33, seed=1, steps=1, height=64, width=64)
    expected = pipe.generate("a red circle moves left", **options).frames
    saved = pipe.save_pretrained(tmp_path / "copy")
    again = HeliosPipeline.from_pretrained(saved, dtype=torch.float32, device="cpu")
    assert again.sampler == pipe.sampler  # the Mid family and its shift, from diffusers' configs
    assert (again.generate("a red circle moves left", **options).frames == expected).all()
    from diffusers import HeliosPyramidPipeline

    HeliosPyramidPipeline.from_pretrained(saved)  # diffusers reads it too


def test_a_world_pipeline_saves_and_loads_back_and_a_fused_lora_is_saved_merged(tmp_path):
    pipe = HeliosPipeline.from_pretrained(device="cpu")  # the embedded default model
    options = dict(num_frames=33, seed=2, steps=1)
    layer = pipe.transformer.blocks[0].attn1.to_q
    generator = torch.Generator().manual_seed(0)
    lora = {
        "transformer.blocks.0.attn1.to_q.lora_A.weight": torch.randn(2, layer.in_features, generator=generator),
        "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.randn(layer.out_features, 2, generator=generator),
    }
    pipe.load_lora_weights(lora, adapter_name="style")
    with_lora = pipe.generate("a red circle moves right on a black background", **options).frames
    with pytest.raises(ValueError, match="holds LoRA adapters"):
        pipe.save_pretrained(tmp_path / "refused")
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # fused, then unloaded: the merged weights stay
    saved = pipe.save_pretrained(tmp_path / "world")
    again = HeliosPipeline.from_pretrained(saved, device="cpu")
    assert again.sampler == pipe.sampler and again.drift_settings == pipe.drift_settings
    got = again.generate("a red circle moves right on a black background", **options).frames
    assert abs(got.astype(int) - with_lora.astype(int)).max() <= 1


def test_the_default_model_is_the_distilled_one_and_its_mid_teacher_loads_by_name(tmp_path, monkeypatch):
    """The embedded default is the 3-step Distilled model; ``default-mid`` names its teacher, which shares
    the default's codec, text encoder and drift thresholds (the same objects' settings, not copies)."""
    from helios.generation.loading import DEFAULT_MODEL_DIR

    default = HeliosPipeline.from_pretrained(device="cpu")
    mid = HeliosPipeline.from_pretrained("default-mid", device="cpu")
    assert default.sampler.pyramid_steps == (1, 1, 1) and default.sampler.guidance_scale == 1.0
    assert mid.sampler.pyramid_steps == (8, 8, 8) and mid.sampler.guidance_scale > 1.0
    assert mid.text_encoder.settings() == default.text_encoder.settings()
    assert mid.drift_settings == default.drift_settings
    codec, teacher_codec = default.codec.state_dict(), mid.codec.state_dict()
    assert all(torch.equal(codec[k], teacher_codec[k]) for k in codec)
    student, teacher = default.transformer.state_dict(), mid.transformer.state_dict()
    assert any(not torch.equal(student[k], teacher[k]) for k in student)  # two models, not one twice
    # a folder of that name in the working directory wins over the embedded model
    (tmp_path / "default-mid").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match="default-mid is not a Helios pipeline folder"):
        HeliosPipeline.from_pretrained("default-mid", device="cpu")
    assert (DEFAULT_MODEL_DIR / "mid" / "model_index.json").is_file()


def test_a_variant_folder_needs_its_own_transformer_and_a_real_parts_folder(tmp_path):
    import shutil

    from helios.generation.loading import DEFAULT_MODEL_DIR

    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "default")
    variant = tmp_path / "default" / "mid"
    shutil.rmtree(variant / "transformer")  # never borrowed from the parent
    with pytest.raises(ModelFolderError, match="mid lacks transformer/"):
        HeliosPipeline.from_pretrained(variant, device="cpu")
    shutil.copytree(DEFAULT_MODEL_DIR / "mid" / "transformer", variant / "transformer")
    index = json.loads((variant / "model_index.json").read_text())
    (variant / "model_index.json").write_text(json.dumps({**index, "parts_from": "../nowhere"}))
    with pytest.raises(ModelFolderError, match="parts_from names .*nowhere, not a model folder"):
        HeliosPipeline.from_pretrained(variant, device="cpu")


def test_an_unknown_model_name_lists_the_embedded_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match="the embedded models are named default, default-mid"):
        HeliosPipeline.from_pretrained("default-base", device="cpu")
