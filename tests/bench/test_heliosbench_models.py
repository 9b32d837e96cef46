"""HeliosBench's model-based metrics on tiny random models of the real architectures (a transformers
CLIP with a LAION-style linear head), and the naturalness judge against a real endpoint on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helios.bench.heliosbench.model_metrics import ClipMetrics, NaturalnessEndpoint, clip_pixels, middle_samples
from helios.bench.heliosbench.runner import BenchPrompt, model_scorers, score_folder, video_name
from helios.bench.heliosbench.viclip import byte_symbols
from helios.media import write_mp4


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny CLIP (ViT + text transformer, as ViT-L/14 but small) with a byte-level BPE tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    symbols = byte_symbols()  # byte-level BPE: printable bytes stand for themselves, the others chr(256 + n)
    vocabulary = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocabulary |= {"<|startoftext|>": len(vocabulary), "<|endoftext|>": len(vocabulary) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocabulary))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocabulary), hidden_size=32, intermediate_size=64, num_hidden_layers=2)
        | dict(num_attention_heads=2, max_position_embeddings=77)
        | dict(bos_token_id=len(vocabulary) - 2, eos_token_id=len(vocabulary) - 1, pad_token_id=len(vocabulary) - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        | dict(image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder


def _video(colour, frames=12, size=(40, 60)):
    video = np.zeros((frames, *size, 3), np.uint8)
    video[:] = colour
    video[:, 10:30, 20:40] = 255 - np.array(colour)
    return video


def test_clip_pixels_resize_crop_and_normalise():
    frame = np.zeros((1, 30, 60, 3), np.uint8)
    frame[..., 0] = 255  # pure red
    pixels = clip_pixels(frame, 16)
    assert pixels.shape == (1, 3, 16, 16)
    expected = [(1 - 0.48145466) / 0.26862954, -0.4578275 / 0.26130258, -0.40821073 / 0.27577711]
    assert torch.allclose(pixels[0, :, 8, 8], torch.tensor(expected), atol=1e-4)
    assert middle_samples(8, 80) == [4, 14, 24, 34, 44, 54, 64, 74] and middle_samples(8, 3) == [0, 1, 2, 2, 2, 2, 2, 2]


def test_aesthetic_reads_normalised_embeddings_through_the_head(clip_folder, tmp_path):
    """With the head's weight set to one video's (normalised) embedding, that video scores exactly
    (1 + bias) / 10 — the cosine with itself — and any other video less."""
    clip = ClipMetrics(clip_folder)
    liked, other = _video((20, 120, 200)), _video((200, 30, 10))
    direction = clip.image_embeddings(liked[:1])[0]
    torch.save({"weight": direction[None], "bias": torch.tensor([0.5])}, tmp_path / "head.pth")
    scored = ClipMetrics(clip_folder, tmp_path / "head.pth")
    assert scored.aesthetic(liked) == pytest.approx(0.15, abs=1e-5)
    assert scored.aesthetic(other) < 0.15 - 1e-3
    with pytest.raises(ValueError, match="needs the LAION linear head"):
        clip.aesthetic(liked)
    torch.save({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, tmp_path / "wide.pth")
    with pytest.raises(ValueError, match="reads 7 features; this CLIP gives 16"):
        ClipMetrics(clip_folder, tmp_path / "wide.pth")
    torch.save({"w": torch.zeros(1, 16)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="needs exactly 'weight'"):
        ClipMetrics(clip_folder, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="not a transformers CLIP folder"):
        ClipMetrics(tmp_path)


def test_clip_semantic_is_the_mean_cosine_over_middle_frames(clip_folder):
    clip = ClipMetrics(clip_folder)
    video = np.concatenate([_video((i * 20, 50, 90), frames=2) for i in range(10)])  # 20 frames, all different
    text = clip.text_embedding("a red square")
    picked = video[middle_samples(8, len(video))]
    manual = np.mean([float(F.normalize(clip.image_embeddings(f[None]), dim=-1)[0] @ text) for f in picked])
    assert clip.semantic(video, "a red square") == pytest.approx(manual, abs=1e-5)
    assert clip.semantic(video, "a red square") != pytest.approx(clip.semantic(video, "zz qq"), abs=1e-6)


class _Judge(BaseHTTPRequestHandler):
    answer = "Rating: 4"
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        reply = json.dumps({"choices": [{"message": {"content": type(self).answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Judge.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_naturalness_asks_the_endpoint_with_16_frames(judge_server, monkeypatch):
    monkeypatch.setenv("HELIOS_NATURALNESS_KEY", "secret")
    judge = NaturalnessEndpoint(judge_server, "judge-model")
    assert judge(_video((10, 10, 10), frames=40, size=(128, 192))) == 0.75  # (4 − 1) / 4
    path, auth, body = _Judge.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer secret"
    assert body["model"] == "judge-model" and body["temperature"] == 0
    images = [c for c in body["messages"][0]["content"] if c["type"] == "image_url"]
    assert len(images) == 16 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    _Judge.answer = "I cannot tell"
    try:
        with pytest.raises(ValueError, match="holds no rating 1–5"):
            judge(_video((10, 10, 10)))
    finally:
        _Judge.answer = "Rating: 4"
    with pytest.raises(ValueError, match="must be an http"):
        NaturalnessEndpoint("ftp://x", "m")


def test_a_folder_scored_with_every_model_metric(clip_folder, judge_server, tmp_path):
    torch.save({"weight": torch.randn(1, 16), "bias": torch.zeros(1)}, tmp_path / "head.pth")
    scorers = model_scorers(clip_folder, tmp_path / "head.pth", judge_server, "judge-model")
    assert set(scorers) == {"aesthetic", "semantic_clip", "naturalness"}
    videos = tmp_path / "videos"
    videos.mkdir()
    short, long = BenchPrompt("181", "a white square", 81), BenchPrompt("1", "a white square", 240)
    write_mp4(_video((0, 0, 80), frames=33, size=(64, 96)), videos / video_name(short, 33), 24)
    write_mp4(_video((0, 0, 80), frames=40, size=(64, 96)), videos / video_name(long, 40), 24)
    result = score_folder(videos, [short, long], scorers, width=None)
    assert result["sets"]["short"]["complete"]  # every short-set metric is there now
    long_set = result["sets"]["long"]
    assert {"drift_aesthetic", "drift_semantic_clip", "drift_naturalness"} <= set(long_set["scores"])
    assert long_set["scores"]["naturalness"] == 0.75 and long_set["ratings"]["naturalness"] == 10
    with pytest.raises(ValueError, match="needs the CLIP model"):
        model_scorers(None, tmp_path / "head.pth")


def test_the_command_scores_with_user_weights(clip_folder, tmp_path):
    from helios.cli import main

    torch.save({"weight": torch.randn(1, 16), "bias": torch.zeros(1)}, tmp_path / "head.pth")
    (tmp_path / "prompts.csv").write_text("id,prompt,duration\n181,a white square,120\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(_video((0, 0, 80), frames=33, size=(64, 96)), videos / "181_81_ori33.mp4", 24)
    arguments = ["bench", "heliosbench", "--score-only", "--prompts", str(tmp_path / "prompts.csv")]
    arguments += ["--out", str(videos), "--clip", str(clip_folder), "--aesthetic-head", str(tmp_path / "head.pth")]
    assert main([*arguments, "--device", "cpu"]) == 0
    short = json.loads((videos / "results.json").read_text())["sets"]["short"]
    assert {"aesthetic", "semantic_clip"} <= set(short["ratings"]) and short["missing"] == ["naturalness"]


def test_raft_from_a_torchvision_weights_file(tmp_path):
    """torchvision's RAFT (random weights, saved as a user's .pth) gives the smoothness metric its flow;
    a file of other weights is refused by name. Runs where a torchvision matching torch is installed
    (the GPU machine); the CPU build here has none."""
    try:
        from torchvision.models.optical_flow import raft_small
    except (ImportError, RuntimeError):
        pytest.skip("no torchvision matching this torch")
    from helios.bench.heliosbench.flow_interpolation import load_raft, motion_smoothness_flow

    torch.save(raft_small(weights=None).state_dict(), tmp_path / "raft_small.pth")
    flow = load_raft(tmp_path)
    video = np.random.default_rng(0).integers(0, 255, (5, 60, 90, 3), dtype=np.uint8)
    field = flow(torch.from_numpy(video[:2]).permute(0, 3, 1, 2).float(), torch.zeros(2, 3, 60, 90))
    assert field.shape == (2, 2, 60, 90) and torch.isfinite(field).all()
    assert 0.0 <= motion_smoothness_flow(video, flow) <= 1.0
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds neither raft_large's nor raft_small's weights"):
        load_raft(tmp_path / "other.pth")
