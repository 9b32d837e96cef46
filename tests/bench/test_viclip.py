"""ViCLIP, HeliosBench's semantic metric, on a tiny random model saved in the official checkpoint layout:
each tower against transformers' CLIP with the same weights (the text tower is CLIP's; the video tower on
one frame without temporal positions is CLIP's image tower), the official frame sampling, the
tokenizer built from a BPE merges file, the metric end to end on a written video, and bad inputs."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helios.bench.heliosbench.model_metrics import clip_pixels, middle_samples
from helios.bench.heliosbench.viclip import (
    ViCLIP,
    ViClipSemantic,
    bpe_tokenizer,
    load_checkpoint,
    tokenize,
)

MERGES = ["r e", "re d</w>", "c i", "ci r", "cir c", "l e</w>", "circ le</w>"]
SIZES = {
    "vision": {"width": 64, "layers": 2, "patch": 8, "resolution": 32, "frames": 4, "output": 16},
    "text": {"width": 64, "layers": 2, "context": 16, "vocabulary": 512 + len(MERGES) + 2, "output": 16},
}


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = ViCLIP(SIZES)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    return model.state_dict()


@pytest.fixture(scope="module")
def viclip_folder(tmp_path_factory):
    """The two files HeliosBench's checkpoint folder holds, at tiny scale: ``{"model": state}`` and a
    gzip BPE merges file (a header line, then one pair per line)."""
    folder = tmp_path_factory.mktemp("viclip")
    torch.save({"model": tiny_state()}, folder / "ViClip-InternVid-10M-FLT.pth")
    with gzip.open(folder / "bpe_simple_vocab_16e6.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(["bpe merges", *MERGES]) + "\n")
    return folder


def _split_attention(prefix: str, state: dict, out: dict, target: str) -> None:
    q, k, v = state[f"{prefix}attn.in_proj_weight"].chunk(3)
    qb, kb, vb = state[f"{prefix}attn.in_proj_bias"].chunk(3)
    for name, weight, bias in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
        out[f"{target}self_attn.{name}_proj.weight"], out[f"{target}self_attn.{name}_proj.bias"] = weight, bias
    out[f"{target}self_attn.out_proj.weight"] = state[f"{prefix}attn.out_proj.weight"]
    out[f"{target}self_attn.out_proj.bias"] = state[f"{prefix}attn.out_proj.bias"]
    for ours, theirs in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1")):
        for kind in ("weight", "bias"):
            out[f"{target}{theirs}.{kind}"] = state[f"{prefix}{ours}.{kind}"]
    for kind in ("weight", "bias"):
        out[f"{target}mlp.fc2.{kind}"] = state[f"{prefix}mlp.c_proj.{kind}"]


def _loaded(reference: torch.nn.Module, state: dict) -> torch.nn.Module:
    """transformers' model with every weight from ``state`` (only its position-id buffer left as built)."""
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return reference.eval()


def test_the_text_tower_is_clips():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    state = tiny_state()
    t = SIZES["text"]
    config = CLIPTextConfig(
        vocab_size=t["vocabulary"],
        hidden_size=t["width"],
        intermediate_size=4 * t["width"],
        num_hidden_layers=t["layers"],
        num_attention_heads=1,
        max_position_embeddings=t["context"],
        projection_dim=t["output"],
        hidden_act="quick_gelu",
        eos_token_id=t["vocabulary"] - 1,
        bos_token_id=t["vocabulary"] - 2,
    )
    theirs = {
        "text_model.embeddings.token_embedding.weight": state["text_encoder.token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["text_encoder.positional_embedding"],
        "text_model.final_layer_norm.weight": state["text_encoder.ln_final.weight"],
        "text_model.final_layer_norm.bias": state["text_encoder.ln_final.bias"],
        "text_projection.weight": state["text_encoder.text_projection"].T,
    }
    for i in range(t["layers"]):
        _split_attention(f"text_encoder.transformer.resblocks.{i}.", state, theirs, f"text_model.encoder.layers.{i}.")
    reference = _loaded(CLIPTextModelWithProjection(config), theirs)
    start, end = t["vocabulary"] - 2, t["vocabulary"] - 1
    tokens = torch.tensor([[start, 353, 518, end] + [0] * 12, [start, 356] + [7] * 13 + [end]])
    with torch.no_grad():
        expected = reference(input_ids=tokens).text_embeds
        ours = ViCLIP.from_state(state).text_encoder(tokens)
    assert torch.allclose(ours, expected, atol=1e-5), (ours - expected).abs().max()


def test_the_video_tower_on_one_frame_is_clips_image_tower():
    """One frame and zero temporal positions (a single frame takes their mean): CLIP's image tower."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    state = tiny_state()
    state["vision_encoder.temporal_positional_embedding"] = torch.zeros_like(
        state["vision_encoder.temporal_positional_embedding"]
    )
    v = SIZES["vision"]
    config = CLIPVisionConfig(
        hidden_size=v["width"],
        intermediate_size=4 * v["width"],
        num_hidden_layers=v["layers"],
        num_attention_heads=1,
        image_size=v["resolution"],
        patch_size=v["patch"],
        projection_dim=v["output"],
        hidden_act="quick_gelu",
    )
    theirs = {
        "vision_model.embeddings.patch_embedding.weight": state["vision_encoder.conv1.weight"][:, :, 0],
        "vision_model.embeddings.class_embedding": state["vision_encoder.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": state["vision_encoder.positional_embedding"],
        "vision_model.pre_layrnorm.weight": state["vision_encoder.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": state["vision_encoder.ln_pre.bias"],
        "vision_model.post_layernorm.weight": state["vision_encoder.ln_post.weight"],
        "vision_model.post_layernorm.bias": state["vision_encoder.ln_post.bias"],
        "visual_projection.weight": state["vision_encoder.proj"].T,
    }
    for i in range(v["layers"]):
        _split_attention(
            f"vision_encoder.transformer.resblocks.{i}.", state, theirs, f"vision_model.encoder.layers.{i}."
        )
    reference = _loaded(CLIPVisionModelWithProjection(config), theirs)
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = ViCLIP.from_state(state)
    with torch.no_grad():
        expected = reference(pixel_values=image).image_embeds
        single = model.vision_encoder(image[:, :, None])
    assert torch.allclose(single, expected, atol=1e-5), (single - expected).abs().max()


def test_frames_attend_jointly_and_their_order_counts():
    model = ViCLIP.from_state(tiny_state())
    video = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        forward, backward = model.vision_encoder(video), model.vision_encoder(video.flip(2))
        batched = model.vision_encoder(torch.cat([video, video.flip(2)]))
    assert not torch.allclose(forward, backward, atol=1e-4)  # the temporal positions tell the order
    assert torch.allclose(batched, torch.cat([forward, backward]), atol=1e-5)  # samples stay apart


def viclip_pixels(frames, size):
    return clip_pixels(frames, size).permute(1, 0, 2, 3)


def test_official_middle_sampling_and_pixels():
    assert middle_samples(8, 81) == [4, 14, 24, 34, 44, 54, 64, 75]
    assert middle_samples(8, 5) == [0, 1, 2, 3, 4, 4, 4, 4]  # short videos repeat the last
    frames = np.zeros((2, 384, 640, 3), np.uint8)
    frames[..., 1] = 255  # pure green
    pixels = viclip_pixels(frames, 32)  # (3, T, …): the layout ViCLIP's video tower reads
    assert pixels.shape == (3, 2, 32, 32)
    expected = [-0.48145466 / 0.26862954, (1 - 0.4578275) / 0.26130258, -0.40821073 / 0.27577711]
    assert torch.allclose(pixels[:, 0, 16, 16], torch.tensor(expected), atol=1e-4)
    assert viclip_pixels(np.zeros((1, 128, 192, 3), np.uint8), 32).shape == (3, 1, 32, 32)  # read 640 wide first


def test_the_tokenizer_is_built_from_the_merges_file(viclip_folder):
    tokenizer = bpe_tokenizer(viclip_folder / "bpe_simple_vocab_16e6.txt.gz")
    ids = tokenize(tokenizer, "A red  circle", 8)[0].tolist()
    # start, "a</w>" (byte 'a', end-of-word: 97 − 33 + 256), "red</w>" and "circle</w>" (merges), end, padding
    names = ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"]
    assert tokenizer.convert_ids_to_tokens(ids[:5]) == names and ids[1] == 97 - 33 + 256
    assert ids[2:4] == [512 + MERGES.index("re d</w>"), 512 + MERGES.index("circ le</w>")]
    assert ids[5:] == [0, 0, 0]
    cut = tokenize(tokenizer, "a red circle a red circle a red circle", 6)[0].tolist()
    assert len(cut) == 6 and cut[-1] == tokenizer.eos_token_id  # cut, the last kept token replaced by the end token


def test_the_semantic_metric_end_to_end(viclip_folder, tmp_path):
    from helios.media import read_video, write_mp4

    metric = ViClipSemantic(viclip_folder)
    video = np.zeros((24, 64, 96, 3), np.uint8)
    for t in range(24):
        video[t, 20:40, 10 + 2 * t : 30 + 2 * t] = (220, 40, 40)
    write_mp4(video, tmp_path / "clip.mp4", fps=24)
    frames = read_video(tmp_path / "clip.mp4")[0]
    score = metric(frames, "a red circle")
    # the same by hand: the official frames, pixels and towers, cosine of the normalised embeddings
    model = ViCLIP.from_state(load_checkpoint(viclip_folder / "ViClip-InternVid-10M-FLT.pth"))
    picked = frames[middle_samples(4, len(frames))]
    with torch.no_grad():
        v = F.normalize(model.vision_encoder(viclip_pixels(picked, 32)[None]), dim=-1)[0]
        t = F.normalize(model.text_encoder(tokenize(metric.tokenizer, "a red circle", 16)), dim=-1)[0]
    assert -1 <= score <= 1 and score == pytest.approx(float(v @ t), abs=1e-6)
    assert metric(frames, "a red circle") == score  # deterministic
    assert metric(frames, "a circle") != score  # the prompt counts
    assert metric(frames[::-1].copy(), "a red circle") != score  # so does the video


def test_bad_viclip_inputs_are_named(viclip_folder, tmp_path):
    with pytest.raises(ValueError, match="ViCLIP checkpoint not found"):
        ViClipSemantic(tmp_path)
    state = tiny_state()
    state["vision_encoder.extra"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"keys do not match: missing \[\], unexpected \['vision_encoder.extra'\]"):
        ViCLIP.from_state(load_checkpoint(tmp_path / "extra.pth"))
    torch.save({"model": {"text_encoder.token_embedding.weight": torch.zeros(4, 4)}}, tmp_path / "half.pth")
    with pytest.raises(ValueError, match="not a ViCLIP checkpoint: it has no vision_encoder.conv1.weight"):
        ViCLIP.from_state(load_checkpoint(tmp_path / "half.pth"))
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(ValueError, match="junk.pth: not a readable weights file"):
        load_checkpoint(tmp_path / "junk.pth")
    (tmp_path / "vocab.txt.gz").write_bytes(b"plain text")
    with pytest.raises(ValueError, match="not a gzip BPE merges file"):
        bpe_tokenizer(tmp_path / "vocab.txt.gz")


def test_the_command_scores_semantic_with_viclip(viclip_folder, tmp_path):
    """`helios bench heliosbench --viclip FOLDER`: the official semantic metric (and its drifting variant
    on the long set), rated on the official tables."""
    import json

    from helios.cli import main
    from helios.media import write_mp4

    (tmp_path / "prompts.csv").write_text("id,prompt,duration\n181,a red circle,120\n1,a red circle,240\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = np.zeros((40, 64, 96, 3), np.uint8)
    clip[:, 20:40, 30:50] = (220, 40, 40)
    write_mp4(clip[:33], videos / "181_81_ori33.mp4", 24)
    write_mp4(clip, videos / "1_240_ori40.mp4", 24)
    arguments = ["bench", "heliosbench", "--score-only", "--prompts", str(tmp_path / "prompts.csv")]
    assert main([*arguments, "--out", str(videos), "--viclip", str(viclip_folder), "--device", "cpu"]) == 0
    sets = json.loads((videos / "results.json").read_text())["sets"]
    assert "semantic" in sets["short"]["ratings"] and "semantic" not in sets["short"]["missing"]
    assert {"semantic", "drift_semantic"} <= set(sets["long"]["ratings"])
    assert -1 <= sets["short"]["scores"]["semantic"] <= 1 and 1 <= sets["short"]["ratings"]["semantic"] <= 10
