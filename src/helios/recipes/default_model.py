"""The recipe that trains the small Helios shipped as the default model (run on a GPU; resumable).

    python -m helios.recipes.default_model --work /tmp/world --phase codec base   # then: mid, ablations, package

Phases (each resumes from what ``--work`` already holds):
  codec      render the world, train the codec, report held-out PSNR, calibrate latent statistics
  offload    encode every rendered video chunk by chunk (+ caption embeddings) into shards
  base       stage 1 (flow matching with history) from scratch; with --from-model, from that model's
             transformer (the Base variant of a packaged Mid model: all noise levels at full resolution)
  mid        stage 2 (pyramid flow matching) initialised from the base model
  refine     more stage 2, with caption dropout, from a packaged model (--from-model)
  ablations  stage 1 in full, without First-Frame Anchor, and without Frame-Aware Corrupt (paper Table 5)
  package    write the default-model folder (fp16 weights, sampler settings, drift thresholds)
  drift      calibrate the adaptive-sampling thresholds of a packaged model (--package-to) for its codec
  ode-pairs  stage 3: record the teacher's (--from-model) pyramid trajectories on real history
  distill-ode   stage 3, Staged ODE Init of the student (from the teacher's weights) on those pairs
  distill-dmd   stage 3, DMD + GAN from the ODE-initialised student (score network: --teacher, else
                the --from-model transformer; the paper uses a Base model); --distill-variant runs a
                Table-5 ablation instead (no_gan, no_coarse_to_fine, bidirectional_teacher)
  package-distilled  the distilled model folder (DMD sampler 1/1/1, no CFG) at --package-to
  package-base  the Base model folder (BASE_SAMPLER: one full-resolution stage, CFG) at --package-to
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import (
    CorruptionSettings,
    DistillSettings,
    HistoryDropSettings,
    HistorySettings,
    SamplerSettings,
    ShiftSettings,
    TrainConfig,
)
from ..encoders.world_codec import WorldCodec
from ..encoders.world_text import WorldTextEncoder
from ..generation import HeliosPipeline, drift
from ..generation.loading import DRIFT_FILE, ModelFolderError, model_folder
from ..model.repatch import repatch_state
from ..model.transformer import HeliosTransformer
from ..synthetic.evaluate import corpus_scene, psnr, temporal_profile
from ..synthetic.world import CHUNK_FRAMES, HEIGHT, WIDTH, Scene, render, sample_scene, vocabulary
from ..training.distillation import student_sampler
from ..training.ode_pairs import record_ode_pairs
from ..training.offload import encode_video, held_first_frames, write_index, write_shard
from ..training.trainer import Trainer

FRAMES = 5 * CHUNK_FRAMES  # five chunks per training video
TRANSFORMER = dict(
    num_attention_heads=4,
    attention_head_dim=32,
    text_dim=64,
    ffn_dim=512,
    num_layers=8,
    rope_dim=(12, 10, 10),
)
DEFAULT_SAMPLER = SamplerSettings(
    name="world-mid",
    pyramid_steps=(8, 8, 8),
    guidance_scale=2.5,  # measured against 4 and 7 on 100 held-out prompts (benchmarks/README.md)
    cfg_zero_star=True,
    zero_init_steps=0,
    shift=ShiftSettings("exponential"),
)

# The Base variant samples at full resolution only, with CFG, and as many steps as the world Mid's
# pyramid (8/8/8) — the official Base (50) and Mid (3 × 20) take comparable counts too.
BASE_SAMPLER = SamplerSettings(
    name="world-base", steps=24, guidance_scale=2.5, cfg_zero_star=True, shift=ShiftSettings("exponential")
)


def _render_one(args: tuple[int, int, int, float]) -> tuple[np.ndarray, dict]:
    seed, index, frames, spread = args
    scene = corpus_scene(seed, index, frames, spread=spread)
    return render(scene, frames), scene.to_dict()


def curriculum_spread(index: int, videos: int) -> float:
    """The start spread of video ``index`` of a start-curriculum corpus of ``videos``: from 0 (every object at
    its anchor) at the first video up to 1 (starts as drawn) at the middle one; the second half is as drawn,
    so once the whole corpus is reachable, half the samples look like the evaluation's scenes."""
    return min(1.0, 2 * index / videos)


def render_corpus(
    count: int, seed: int, frames: int = FRAMES, workers: int = 16, first: int = 0, curriculum_videos: int = 0
) -> tuple[np.ndarray, list[dict]]:
    """Videos ``first`` … ``first + count − 1`` of the corpus drawn with ``seed`` (held-out captions excluded);
    ``curriculum_videos``: of a start-curriculum corpus of that many videos (``curriculum_spread``)."""
    jobs = [
        (seed, i, frames, curriculum_spread(i, curriculum_videos) if curriculum_videos else 1.0)
        for i in range(first, first + count)
    ]
    with Pool(workers) as pool:
        results = pool.map(_render_one, jobs, chunksize=8)
    return np.stack([r[0] for r in results]), [r[1] for r in results]


def _clips(videos: torch.Tensor, batch: int, length: int, generator: torch.Generator, device) -> torch.Tensor:
    index = torch.randint(len(videos), (batch,), generator=generator)
    start = torch.randint(videos.shape[1] - length + 1, (batch,), generator=generator)
    clips = torch.stack([videos[i, s : s + length] for i, s in zip(index.tolist(), start.tolist())])
    return clips.to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (B, 3, T, H, W)


def train_codec(
    videos: np.ndarray,
    held_out: np.ndarray,
    steps: int,
    device: str,
    log,
    lr: float = 1e-3,
    batch: int = 8,
    start: WorldCodec | None = None,
    minutes: float | None = None,
    boundary_weight: float = 0.0,
    previous_frame_lr_scale: float = 1.0,
) -> tuple[WorldCodec, float]:
    """Train the codec from scratch, or, given ``start``, fine-tune only its decoder: the encoder and
    so every latent (and every model trained on them) stay exactly as they were. With ``minutes`` the
    cosine schedule follows whichever runs out first, the steps or the time. ``boundary_weight``: extra
    weight of the frame-to-frame change into each latent group's first frame (where two decoder passes
    meet, and decoded video jumps). ``previous_frame_lr_scale``: the learning rate of a ``previous_frame``
    decoder's new input, relative to the rest (it starts at zero, and at the decoder's rate it barely moved
    in 686 CPU steps)."""
    torch.manual_seed(0)
    codec = (start or WorldCodec()).to(device)
    if start is not None:
        codec.encoder.requires_grad_(False)
    data = torch.from_numpy(videos).to(device)
    trained = [(name, p) for name, p in codec.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for name, p in trained if not name.startswith("previous_in.")], "scale": 1.0},
        {"params": [p for name, p in trained if name.startswith("previous_in.")], "scale": previous_frame_lr_scale},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    started = time.time()
    step = 0
    while True:
        progress = max(step / steps, (time.time() - started) / (60 * minutes) if minutes else 0.0)
        if progress >= 1:
            break
        warmup = min(1.0, (step + 1) / 300) if start is not None else 1.0  # fresh Adam on trained weights
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * warmup * (1e-5 + 0.5 * (lr - 1e-5) * (1 + math.cos(math.pi * progress)))
        clip = _clips(data, batch, 17, generator, device)
        z = codec.encode_raw(clip)
        recon = codec.decode_raw(z)
        # The frame-to-frame change is matched too: a decoder that repeats one frame per latent
        # (stop-motion) pays for it even where its pixels are close on average.
        change_errors = (recon[:, :, 1:] - recon[:, :, :-1] - (clip[:, :, 1:] - clip[:, :, :-1])).abs()
        # (change 4j → 4j + 1: into a group)
        motion = change_errors.mean() + boundary_weight * change_errors[:, :, ::4].mean()
        loss = F.l1_loss(recon, clip) + F.mse_loss(recon, clip) + motion + 1e-4 * z.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clipped: a wide decoder at 1e-3 once jumped from loss 0.03 to 38 and never recovered.
        torch.nn.utils.clip_grad_norm_([p for p in codec.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        if step % 500 == 0:
            log(f"codec step {step}: loss {loss.item():.4f} ({time.time() - started:.0f} s)")
        step += 1
    log(f"codec stopped at step {step} ({time.time() - started:.0f} s)")
    codec.eval()
    quality = codec_psnr(codec, held_out, device)
    log(f"codec held-out PSNR {quality:.2f} dB over {len(held_out)} videos")
    return codec, quality


def with_context_decoder(
    start: WorldCodec, decoder_channels: tuple[int, int, int] | None, previous_frame: bool = False
) -> WorldCodec:
    """A codec with ``start``'s encoder and latent statistics (so latents, and every model trained on
    them, stay valid) and a decoder that also sees the previous latent frame, and with ``previous_frame``
    the previous group's last decoded frame too. With the same widths the decoder starts as ``start``'s
    (each input it lacked weighted zero); else from scratch."""
    codec = WorldCodec(
        start.latent_channels,
        start.channels,
        decoder_channels or start.decoder_channels,
        True,
        previous_frame or start.previous_frame,
    )
    codec.encoder.load_state_dict(start.encoder.state_dict())
    codec.latent_mean.copy_(start.latent_mean)
    codec.latent_std.copy_(start.latent_std)
    if codec.decoder_channels == start.decoder_channels:
        state = start.decoder.state_dict()
        if not start.temporal_context:
            first = state["0.weight"]
            state["0.weight"] = torch.cat([torch.zeros_like(first), first], dim=1)
        codec.decoder.load_state_dict(state)
        if start.previous_frame:
            codec.previous_in.load_state_dict(start.previous_in.state_dict())
    return codec


@torch.no_grad()
def codec_temporal_profile(codec: WorldCodec, videos: np.ndarray, device) -> dict[str, list[float]]:
    """``temporal_profile`` of held-out clips through the codec, pooled over the clips."""
    decoded, truth = [], []
    for video in videos:
        clip = torch.from_numpy(video[:CHUNK_FRAMES]).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        out = codec.decode_raw(codec.encode_raw(clip)).clamp(-1, 1)[0].permute(1, 2, 3, 0)
        decoded.append(((out + 1) * 127.5).round().byte().cpu().numpy())
        truth.append(video[:CHUNK_FRAMES])
    profiles = [temporal_profile(d, t) for d, t in zip(decoded, truth)]
    return {key: np.mean([p[key] for p in profiles], axis=0).round(4).tolist() for key in profiles[0]}


@torch.no_grad()
def calibrate_drift_thresholds(codec: WorldCodec, videos: np.ndarray, device) -> drift.DriftSettings:
    """Adaptive-sampling thresholds for this codec: its latents of clean videos, chunk by chunk."""
    sequences = []
    for video in videos:
        pixels = torch.from_numpy(video).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        chunks = pixels.shape[2] // CHUNK_FRAMES
        sequences.append([codec.encode(pixels[:, :, i * CHUNK_FRAMES : (i + 1) * CHUNK_FRAMES]) for i in range(chunks)])
    return drift.calibrate(sequences)


def write_drift_thresholds(folder: Path, codec_dir: Path, seed: int = 3, videos: int = 32) -> drift.DriftSettings:
    """Calibrate on renders of their own seed without events (a scripted colour change is content,
    not drift) and store ``drift.json`` in a model folder."""
    rng = np.random.default_rng(seed)
    rendered = np.stack([render(sample_scene(rng, event_probability=0.0), FRAMES) for _ in range(videos)])
    settings = calibrate_drift_thresholds(WorldCodec.from_pretrained(codec_dir), rendered, "cpu")
    (folder / DRIFT_FILE).write_text(json.dumps(settings.to_dict(), indent=1))
    return settings


@torch.no_grad()
def codec_psnr(codec: WorldCodec, videos: np.ndarray, device) -> float:
    values = []
    for video in videos:
        clip = torch.from_numpy(video[:CHUNK_FRAMES]).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        values.append(psnr(codec.decode_raw(codec.encode_raw(clip)).clamp(-1, 1), clip))
    return float(np.mean(values))


@torch.no_grad()
def calibrate(codec: WorldCodec, videos: np.ndarray, device) -> None:
    """Per-channel latent mean/std over a sample of chunks, stored in the codec (Helios normalises latents)."""
    zs = []
    for video in videos[:64]:
        clip = torch.from_numpy(video[:CHUNK_FRAMES]).to(device).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        zs.append(codec.encode_raw(clip).float())
    z = torch.cat(zs, dim=2)
    codec.latent_mean.copy_(z.mean(dim=(0, 2, 3, 4)))
    codec.latent_std.copy_(z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3))


def world_text_encoder(binding: bool = False) -> WorldTextEncoder:
    """The frozen text encoder of every world model: the world's vocabulary, 64 dimensions; with
    ``binding``, every word also carries its object's phrase (see ``WorldTextEncoder``)."""
    return WorldTextEncoder(vocabulary(), binding=binding)


def offload_corpus(
    count: int,
    seed: int,
    frames: int,
    codec: WorldCodec,
    text: WorldTextEncoder,
    folder: Path,
    block: int = 256,
    curriculum: bool = False,
) -> Path:
    """Render and encode the corpus a block at a time (a large corpus never sits in memory whole).
    Every chunk gets the caption true to it (``Scene.section_captions``: colours after events,
    directions after bounces), not the video's opening caption. ``curriculum``: a start-curriculum corpus,
    its files in order of spread (what ``TrainConfig.curriculum_steps`` expects)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for first in range(0, count, block):
        videos, scenes = render_corpus(
            min(block, count - first), seed, frames, first=first, curriculum_videos=count if curriculum else 0
        )
        for n, (video, scene) in enumerate(zip(videos, scenes), start=first):
            captions = Scene.from_dict(scene).section_captions(frames)
            latents, embedding = encode_video(video, captions, codec, text, HEIGHT, WIDTH)
            held = held_first_frames(video, codec, HEIGHT, WIDTH)  # for --still-image
            files.append(
                write_shard(folder, f"{n:06d}.safetensors", latents, embedding, captions[0], f"world:{n}", held)
            )
    write_index(folder, files, HEIGHT, WIDTH, ordered=curriculum)
    return folder


def train_stage(config: TrainConfig, minutes: float, log) -> Path:
    trainer = Trainer(config)
    deadline = time.time() + minutes * 60
    while trainer.step < config.max_steps and time.time() < deadline:
        records = trainer.train(stop_after=100)
        log(f"stage {config.stage} step {trainer.step}: loss {np.mean([r['loss'] for r in records]):.4f}")
    trainer.save_checkpoint()
    log(f"stage {config.stage} ({Path(config.output_dir).name}) stopped at step {trainer.step}")
    return trainer.export(Path(config.output_dir) / "export")


# Table 5's distillation ablations at small scale (the full method: Staged ODE Init, Dynamic Re-noise, GAN,
# an autoregressive teacher that sees the real history)
# (settings changed, whether the student starts from Staged ODE Init — else from the teacher's weights)
DISTILL_ABLATIONS = {
    "full": ({}, True),
    "no_gan": (dict(gan=False), True),  # w/o Adversarial Post-Training
    "no_coarse_to_fine": (dict(renoise_alpha=1.0, renoise_beta=1.0), False),  # no ODE init, uniform re-noise
    "bidirectional_teacher": (dict(score_history=False), True),  # the scores see each chunk alone
}


def refine_start(transformer: Path, target: Path, aligned: bool = False, repatch: int = 1) -> Path:
    """A transformer folder to start a refine from: ``transformer``'s weights with ``pyramid_rope_alignment``
    turned on, and/or re-patched to spatial tokens ``repatch`` times narrower (``model/repatch.py``)."""
    target.mkdir(parents=True, exist_ok=True)
    model = HeliosTransformer.from_pretrained(transformer, dtype=torch.float32)
    state, config = model.state_dict(), model.config
    if repatch > 1:
        state, config = repatch_state(state, config, repatch)
    started = HeliosTransformer.from_config(
        replace(config, pyramid_rope_alignment=aligned or config.pyramid_rope_alignment)
    )
    started.load_state_dict(state)
    started.save_pretrained(target)
    return target


def repatched_sampler(sampler: SamplerSettings, repatch: int) -> SamplerSettings:
    """``sampler`` for a model re-patched by ``repatch``: the dynamic shift reads a token count, and a
    chunk has ``repatch²`` times as many tokens — its token scale grows with them, so the σ tables
    (which the model was trained and is judged with) stay the same."""
    if repatch == 1 or not sampler.shift.kind:
        return sampler
    tokens = repatch**2
    shift = replace(
        sampler.shift, base_seq_len=sampler.shift.base_seq_len * tokens, max_seq_len=sampler.shift.max_seq_len * tokens
    )
    return replace(sampler, shift=shift)


def stage_config(
    stage: int,
    shards: Path,
    out: Path,
    init: str | dict,
    steps: int,
    batch_size: int = 32,
    compile: bool = False,
    **changes,
) -> TrainConfig:
    """``compile``: regional torch.compile of the trained transformer (GPU only: the small model is
    launch-bound there; on a CPU compiling costs more than it saves)."""
    values = dict(
        compile="inductor" if compile and torch.cuda.is_available() else None,
        stage=stage,
        data=str(shards),
        output_dir=str(out),
        transformer=init,
        batch_size=batch_size,
        learning_rate=3e-4 if stage == 1 else 1e-4,
        warmup_steps=200 if stage == 1 else 50,
        max_steps=steps,
        mixed_precision="bf16" if torch.cuda.is_available() else "no",  # CPU bf16 is slow
        ema_decay=0.999,
        ema_start=300 if stage == 1 else 0,
        log_every=50,
        checkpoint_every=500,
        seed=stage,
        init_memory_patches=stage == 1,
    )
    values.update(changes)
    return TrainConfig(**values)


def package(
    target: Path,
    codec_dir: Path,
    transformer_dir: Path,
    sampler: SamplerSettings,
    report: dict,
    text: WorldTextEncoder | None = None,
) -> Path:
    """The default-model folder: fp16 transformer and codec, text-encoder and sampler settings."""
    target.mkdir(parents=True, exist_ok=True)
    model = HeliosTransformer.from_pretrained(transformer_dir, dtype=torch.float16)
    model.cast(torch.float16)  # ship every tensor in fp16: half the bytes, loaded back as fp32
    model.save_pretrained(target / "transformer")
    WorldCodec.from_pretrained(codec_dir).cast(torch.float16).save_pretrained(target / "codec")
    # The thresholds are the codec's: a codec taken from a packaged model brings its calibrated ones.
    calibrated = codec_dir.parent / DRIFT_FILE
    if calibrated.is_file():
        shutil.copyfile(calibrated, target / DRIFT_FILE)
    else:
        write_drift_thresholds(target, target / "codec")
    (target / "text_encoder.json").write_text(json.dumps((text or world_text_encoder()).settings()))
    (target / "sampler.json").write_text(json.dumps(asdict(sampler), indent=1))
    (target / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "HeliosWorldPipeline",
                "height": HEIGHT,
                "width": WIDTH,
                "fps": 24,
                "report": report,
            },
            indent=1,
        )
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument(
        "--phase",
        nargs="+",
        required=True,
        choices=[
            "codec",
            "offload",
            "base",
            "mid",
            "refine",
            "ablations",
            "package",
            "drift",
            "ode-pairs",
            "distill-ode",
            "distill-dmd",
            "package-distilled",
            "package-base",
        ],
    )
    parser.add_argument(
        "--from-model",
        help="phases refine / base: a packaged world model to continue (stage 2 / stage 1), or the teacher to "
        "distil; a folder or default-mid",
    )
    parser.add_argument(
        "--codec-from", help="a trained codec folder: used as is, or with phase codec, its decoder fine-tuned"
    )
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--sections", type=int, default=5, help="33-frame chunks per corpus video")
    parser.add_argument("--corpus-seed", type=int, default=1)
    parser.add_argument(
        "--text-binding", action="store_true", help="a text encoder that binds attributes to their object"
    )
    parser.add_argument(
        "--first-section", type=float, help="share of training samples at a video's first chunk (no history)"
    )
    parser.add_argument(
        "--pyramid-ratios",
        type=int,
        nargs="+",
        help="phases mid/refine: samples per pyramid stage per step (stage 2's sample ratios; default 1 1 1); "
        "their count is the pyramid's number of stages",
    )
    parser.add_argument(
        "--pyramid-steps",
        type=int,
        nargs="+",
        help="phase package: sampling steps per pyramid stage (default 8 8 8); as many as --pyramid-ratios",
    )
    parser.add_argument(
        "--pyramid-rope-alignment",
        action="store_true",
        help="phase refine: continue with the lower stages' RoPE aligned to the history grid "
        "(TransformerConfig.pyramid_rope_alignment; an experiment, off in the shipped model)",
    )
    parser.add_argument(
        "--repatch",
        type=int,
        default=1,
        help="phase refine: continue with spatial tokens this many times narrower (model/repatch.py; the "
        "world model's 16-pixel tokens at 2 gives 8; an experiment, off in the shipped model)",
    )
    parser.add_argument(
        "--motion-weight",
        type=float,
        default=0.0,
        help="phases mid/refine: extra loss weight of moving latent elements (TrainConfig.motion_weight)",
    )
    parser.add_argument(
        "--coarse-motion-dropout",
        type=float,
        default=0.0,
        help="phases mid/refine: share of samples whose finer pyramid stages start from a motionless coarse "
        "level (TrainConfig.coarse_motion_dropout: they then draw the captioned motion themselves)",
    )
    parser.add_argument(
        "--start-curriculum",
        type=int,
        default=0,
        metavar="STEPS",
        help="phase offload: render a start-curriculum corpus (objects from their anchors outwards, "
        "world.with_start_spread); phases base/mid/refine: reach all of it over STEPS steps (give it to both)",
    )
    parser.add_argument(
        "--still-image",
        type=float,
        default=0.0,
        help="phases mid/refine: share of samples given I2V's history of a still image of the chunk's first "
        "frame (HistoryDropSettings.still_image: the caption alone then tells the path)",
    )
    parser.add_argument("--codec-steps", type=int, default=3000)
    parser.add_argument("--codec-lr", type=float, default=1e-3)
    parser.add_argument("--codec-minutes", type=float, help="time budget of the codec (default: none)")
    parser.add_argument("--codec-batch", type=int, default=8)
    parser.add_argument(
        "--codec-boundary-weight",
        type=float,
        default=0.0,
        help="phase codec: extra loss weight of the frame-to-frame change into each latent group's first frame",
    )
    parser.add_argument(
        "--codec-context",
        action="store_true",
        help="phase codec with --codec-from: a new decoder that also sees the previous latent frame",
    )
    parser.add_argument(
        "--codec-previous-frame",
        action="store_true",
        help="phase codec with --codec-from: the decoder also sees the previous group's last decoded frame",
    )
    parser.add_argument(
        "--codec-previous-frame-lr-scale",
        type=float,
        default=1.0,
        help="phase codec: learning rate of that new input relative to the decoder's",
    )
    parser.add_argument("--decoder-channels", type=int, nargs=3, help="widths of that new decoder")
    parser.add_argument("--base-steps", type=int, default=6000)
    parser.add_argument("--mid-steps", type=int, default=2000)
    parser.add_argument("--ablation-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--compile", action="store_true", help="phases base/mid/refine: compile each transformer block (GPU)"
    )
    parser.add_argument("--base-minutes", type=float, default=3.5, help="time budget of stage 1")
    parser.add_argument("--mid-minutes", type=float, default=2.0, help="time budget of stage 2")
    parser.add_argument(
        "--ablation",
        nargs="+",
        default=["full", "no_anchor", "no_corrupt"],
        choices=["full", "no_anchor", "no_corrupt"],
        help="phase ablations: which variants to train",
    )
    parser.add_argument("--ablation-minutes", type=float, default=1.5, help="time budget of each ablation")
    parser.add_argument(
        "--report",
        default="report.json",
        help="file under --work that collects the results (give concurrent runs their own)",
    )
    parser.add_argument("--package-to", help="default-model folder to write (phase package)")
    parser.add_argument("--ode-pairs", type=int, default=512, help="phase ode-pairs: how many")
    parser.add_argument("--distill-steps", type=int, default=100000)
    parser.add_argument("--distill-minutes", type=float, default=2.0, help="time budget of each distill phase")
    parser.add_argument("--teacher", help="phase distill-dmd: the real/fake-score transformer folder")
    parser.add_argument(
        "--distill-variant",
        choices=sorted(DISTILL_ABLATIONS),
        default="full",
        help="phases distill-dmd / package-distilled: the full method or a Table-5 ablation of it",
    )
    parser.add_argument("--distill-seed", type=int, default=0, help="phase distill-dmd: seed offset (ablation repeats)")
    parser.add_argument("--gan-start", type=int, default=200, help="phase distill-dmd: first step with the GAN")
    parser.add_argument(
        "--renoise-anneal",
        type=int,
        help="phase distill-dmd: generator updates over which Dynamic Re-noise anneals to uniform (default "
        "500, the official; a short run that stops long before sees mostly high noise)",
    )
    parser.add_argument(
        "--real-guidance",
        type=float,
        help="phase distill-dmd: the real score's guidance, official convention (default: the teacher's "
        "standard CFG weight − 1); a run with it gets its own folder",
    )
    args = parser.parse_args()
    stages = len(args.pyramid_ratios or DEFAULT_SAMPLER.pyramid_steps)
    if len(args.pyramid_steps or DEFAULT_SAMPLER.pyramid_steps) != stages:
        parser.error(f"a {stages}-stage pyramid (--pyramid-ratios) needs --pyramid-steps with {stages} values")
    if args.start_curriculum < 0:
        parser.error(
            f"--start-curriculum takes the steps that reach the whole corpus (0: none), got {args.start_curriculum}"
        )
    if args.from_model:  # a folder or an embedded model's name (default-mid): later phases read its files
        args.from_model = str(model_folder(args.from_model))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report_path = work / args.report
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}

    started = time.time()

    def log(message: str) -> None:  # with the minutes since the start (device calls are budgeted)
        print(f"[{(time.time() - started) / 60:5.1f} min] {message}", flush=True)

    # The codec later phases use: the one this run trains, else the one given.
    codec_dir = work / "codec" if "codec" in args.phase or not args.codec_from else Path(args.codec_from)
    frames = args.sections * CHUNK_FRAMES
    # A model continued or distilled reads the captions with its own encoder (binding follows it) and,
    # as a teacher, samples as it ships: its trajectories (ODE pairs) and its guidance (the real score).
    try:
        start_model = HeliosPipeline.from_pretrained(args.from_model) if args.from_model else None
    except ModelFolderError as exc:
        parser.error(f"--from-model: {exc}")
    text = world_text_encoder(args.text_binding or (start_model is not None and start_model.text_encoder.binding))
    teacher_sampler = start_model.sampler if start_model else DEFAULT_SAMPLER
    if "codec" in args.phase:
        started = time.time()
        videos, _ = render_corpus(args.videos, args.corpus_seed, frames)
        log(f"rendered {len(videos)} videos of {frames} frames in {time.time() - started:.0f} s")
        held_out, _ = render_corpus(32, seed=2, frames=CHUNK_FRAMES)
        start = WorldCodec.from_pretrained(args.codec_from) if args.codec_from else None
        if start is not None and (args.codec_context or args.codec_previous_frame):
            widths = tuple(args.decoder_channels) if args.decoder_channels else None
            start = with_context_decoder(start, widths, args.codec_previous_frame)
        if start is not None:
            log(
                f"codec {args.codec_from}: held-out PSNR before {codec_psnr(start.to(device), held_out, device):.2f} dB"
            )
        codec, quality = train_codec(
            videos,
            held_out,
            args.codec_steps,
            device,
            log,
            args.codec_lr,
            args.codec_batch,
            start,
            args.codec_minutes,
            args.codec_boundary_weight,
            args.codec_previous_frame_lr_scale,
        )
        if start is None:
            calibrate(codec, videos, device)
        report["codec_psnr_db"] = quality
        report["codec_temporal_profile"] = codec_temporal_profile(codec, held_out, device)
        codec.cpu().save_pretrained(work / "codec")
        log(f"codec temporal profile: {report['codec_temporal_profile']}")
        report_path.write_text(json.dumps(report, indent=1))
    if "offload" in args.phase:
        started = time.time()
        codec = WorldCodec.from_pretrained(codec_dir, device=device)
        offload_corpus(
            args.videos, args.corpus_seed, frames, codec, text, work / "shards", curriculum=bool(args.start_curriculum)
        )
        log(f"rendered and offloaded {args.videos} videos of {frames} frames in {time.time() - started:.0f} s")
    if "base" in args.phase:
        # From scratch, or the Base variant of a packaged model (its weights, a fine-tuning rate, caption
        # dropout kept for CFG).
        start = (
            dict(init_memory_patches=False, caption_dropout=0.1, learning_rate=1e-4, warmup_steps=50)
            if args.from_model
            else {}
        )
        config = stage_config(
            1,
            work / "shards",
            work / "base",
            str(Path(args.from_model) / "transformer") if args.from_model else TRANSFORMER,
            args.base_steps,
            args.batch_size,
            args.compile,
            first_section=args.first_section,
            curriculum_steps=args.start_curriculum,
            **start,
        )
        report["base"] = str(train_stage(config, args.base_minutes, log))
    stage2_options = dict(
        motion_weight=args.motion_weight,
        coarse_motion_dropout=args.coarse_motion_dropout,
        curriculum_steps=args.start_curriculum,
    )
    if args.still_image:
        stage2_options["history_drop"] = replace(HistoryDropSettings(), still_image=args.still_image)
    if args.pyramid_ratios:
        stage2_options["pyramid_sample_ratios"] = tuple(args.pyramid_ratios)
    if "mid" in args.phase:
        config = stage_config(
            2,
            work / "shards",
            work / "mid",
            str(work / "base" / "export"),
            args.mid_steps,
            args.batch_size,
            args.compile,
            first_section=args.first_section,
            **stage2_options,
        )
        report["mid"] = str(train_stage(config, args.mid_minutes, log))
    if "refine" in args.phase:
        start = Path(args.from_model) / "transformer"
        if args.pyramid_rope_alignment or args.repatch > 1:
            start = refine_start(start, work / "refine_start", args.pyramid_rope_alignment, args.repatch)
        config = stage_config(
            2,
            work / "shards",
            work / "refine",
            str(start),
            args.mid_steps,
            args.batch_size,
            args.compile,
            caption_dropout=0.1,
            first_section=args.first_section,
            **stage2_options,
        )
        report["refine"] = str(train_stage(config, args.mid_minutes, log))
    if "ablations" in args.phase:
        variants = {
            "full": {},
            "no_anchor": dict(history=HistorySettings(keep_first_frame=False)),
            "no_corrupt": dict(corruption=replace(CorruptionSettings(), clean_prob=1.0)),
        }
        for name in args.ablation:
            config = stage_config(
                1,
                work / "shards",
                work / "ablation" / name,
                TRANSFORMER,
                args.ablation_steps,
                args.batch_size,
                caption_dropout=0.1,
                **variants[name],
            )
            report[f"ablation_{name}"] = str(train_stage(config, args.ablation_minutes, log))
    if "package" in args.phase:
        target = Path(args.package_to or work / "default_model")
        trained = work / ("refine" if "refine" in args.phase else "mid") / "export"
        sampler = replace(DEFAULT_SAMPLER, pyramid_steps=tuple(args.pyramid_steps or DEFAULT_SAMPLER.pyramid_steps))
        package(target, codec_dir, trained, repatched_sampler(sampler, args.repatch), report, text)
        log(f"packaged {target}")
    if {"ode-pairs", "distill-ode", "distill-dmd"} & set(args.phase) and not args.from_model:
        parser.error("the distillation phases need --from-model (the packaged teacher)")
    if "ode-pairs" in args.phase:
        record_ode_pairs(
            start_model.transformer,
            work / "shards",
            work / "ode",
            teacher_sampler,
            args.ode_pairs,
            device=device,
            batch_size=args.batch_size,
        )
        log(f"recorded {args.ode_pairs} ODE pairs")
    if "distill-ode" in args.phase:
        config = stage_config(
            3,
            work / "ode",
            work / "distill_ode",
            str(Path(args.from_model) / "transformer"),
            args.distill_steps,
            args.batch_size,
            distill=DistillSettings(phase="ode"),
            ema_start=100,
        )
        report["distill_ode"] = str(train_stage(config, args.distill_minutes, log))
    variant = args.distill_variant
    dmd_dir = work / ("distill_dmd" if variant == "full" else f"distill_dmd_{variant}")
    if args.distill_seed:
        dmd_dir = dmd_dir.with_name(f"{dmd_dir.name}_seed{args.distill_seed}")
    if args.real_guidance is not None:
        dmd_dir = dmd_dir.with_name(f"{dmd_dir.name}_guidance{args.real_guidance:g}")
    if args.renoise_anneal is not None:
        dmd_dir = dmd_dir.with_name(f"{dmd_dir.name}_anneal{args.renoise_anneal}")
    if "distill-dmd" in args.phase:
        distill = DistillSettings(
            phase="dmd",
            teacher=args.teacher or str(Path(args.from_model) / "transformer"),
            critic_lora_rank=None,  # a small model: the whole score network is the critic
            critic_learning_rate=2e-5,
            # the official convention cond + s·(cond − uncond) is a standard CFG weight of s + 1
            real_guidance_scale=(
                teacher_sampler.guidance_scale - 1 if args.real_guidance is None else args.real_guidance
            ),
            gan_start_step=args.gan_start,
            gan_head_dim=128,
            **({} if args.renoise_anneal is None else {"renoise_anneal_steps": args.renoise_anneal}),
            **DISTILL_ABLATIONS[variant][0],
        )
        ode_init = DISTILL_ABLATIONS[variant][1]
        init = work / "distill_ode" / "export" if ode_init else Path(args.from_model) / "transformer"
        config = stage_config(
            3,
            work / "shards",
            dmd_dir,
            str(init),
            args.distill_steps,
            args.batch_size,
            distill=distill,
            learning_rate=2e-5,
            ema_start=50,
            seed=3 + args.distill_seed,
        )
        report[dmd_dir.name] = str(train_stage(config, args.distill_minutes, log))
    if "package-distilled" in args.phase:
        target = Path(args.package_to or work / "distilled_model")
        student = dmd_dir if (dmd_dir / "export").is_dir() else work / "distill_ode"
        package(target, codec_dir, student / "export", student_sampler(DistillSettings(phase="ode")), report, text)
        log(f"packaged the distilled model {target} (from {student.name})")
    if "package-base" in args.phase:
        target = Path(args.package_to or work / "base_model")
        package(target, codec_dir, work / "base" / "export", BASE_SAMPLER, report, text)
        log(f"packaged the Base model {target}")
    if "drift" in args.phase:  # (re)calibrate the adaptive-sampling thresholds of a packaged model
        target = Path(args.package_to or work / "default_model")
        log(f"drift thresholds of {target}: {write_drift_thresholds(target, target / 'codec')}")
    report_path.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
