"""Command line: ``helios generate | ...``. Thin: parses, then calls the library."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class UsageError(ValueError):
    """A bad command-line value; printed as one line."""


def _workloads(name: str | None) -> list | None:
    """``bench speed --workload``: the step settings to measure in turn (None: --steps or the preset's)."""
    from .bench.speed import WORKLOADS

    if name is None:
        return None
    return list(WORKLOADS.values()) if name == "both" else [WORKLOADS[name]]


def _steps(text: str) -> int | list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be a number or a comma list like 2,2,2 (got {text!r})") from None
    return values[0] if len(values) == 1 else values


def _tiers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"tiers must be a comma list like 81,240 (got {text!r})") from None


def _sigma(text: str | None, flag: str) -> tuple[float, float] | None:
    from .generation.request import sigma_range

    if text is None:
        return None
    try:
        return sigma_range([float(v) for v in text.split(",")], flag)
    except ValueError:
        raise UsageError(f"{flag} must be a number in [0, 1] or a range MIN,MAX within it, got {text!r}") from None


def _add_lora_argument(parser) -> None:
    parser.add_argument(
        "--lora",
        action="append",
        metavar="FILE[:SCALE]",
        help="a LoRA (diffusers, Wan or musubi/kohya .safetensors) at SCALE (default 1); repeatable",
    )


def _lora_specs(values: list[str] | None) -> list[tuple[Path, float]]:
    """--lora values as (file, scale), checked before any model loads."""
    specs = []
    for value in values or []:
        path, scale = value, 1.0
        head, sep, tail = value.rpartition(":")
        if sep:
            try:
                path, scale = head, float(tail)
            except ValueError:
                pass  # a colon in the file name
        if not Path(path).is_file():
            raise UsageError(f"--lora {path} not found")
        specs.append((Path(path), scale))
    return specs


def _apply_loras(pipeline, specs: list[tuple[Path, float]]) -> None:
    """Load each LoRA as an adapter at its scale and fold them into the weights (no per-call cost)."""
    if not specs:
        return
    names = [pipeline.load_lora_weights(path, adapter_name=f"lora{i}") for i, (path, _) in enumerate(specs)]
    pipeline.set_adapters(names, [scale for _, scale in specs])
    pipeline.fuse_lora()


def _add_context_parallel_argument(parser) -> None:
    parser.add_argument(
        "--context-parallel",
        choices=["ulysses", "ring"],
        default="ulysses",
        help="under torchrun, how self-attention spans the split sequence: all-to-all (ulysses) or ring (inference)",
    )


def _add_fast_path_arguments(parser) -> None:
    """The command-line flags of every fast path (shared by ``generate`` and ``bench speed``)."""
    parser.add_argument("--compile", action="store_true", help="regional torch.compile of the transformer blocks")
    parser.add_argument(
        "--attention",
        default=os.environ.get("HELIOS_ATTENTION"),
        help="attention backend: sdpa, cudnn, flash, flash_attn3, fp8, ... (default: $HELIOS_ATTENTION or sdpa)",
    )
    parser.add_argument(
        "--fused-kernels", action="store_true", help="Triton LayerNorm+modulation and RoPE (eager path)"
    )
    parser.add_argument("--fuse-qkv", action="store_true", help="one GEMM for q, k, v")
    parser.add_argument("--batched-cfg", action="store_true", help="cond and uncond as one batch")
    parser.add_argument("--vae-dtype", choices=["fp32", "bf16"], default="fp32", help="Wan VAE precision")
    parser.add_argument("--vae-channels-last", action="store_true", help="channels-last 3-D conv weights in the VAE")
    parser.add_argument("--vae-compile", action="store_true", help="torch.compile the VAE decoder")
    parser.add_argument(
        "--vae-decoder", choices=["diffusers", "helios"], default="diffusers", help="Wan VAE decoder implementation"
    )
    parser.add_argument("--fp8", choices=["per_row", "per_tensor"], help="block linears through the FP8 GEMM")
    parser.add_argument("--cuda-graphs", action="store_true", help="one CUDA graph per transformer input shape")
    parser.add_argument(
        "--overlap-vae", action="store_true", help="decode on a second stream while denoising the next chunk"
    )
    parser.add_argument(
        "--offload",
        choices=["text", "all"],
        help="memory mode: UMT5 layers (text) or also the transformer blocks (all) streamed from pinned host memory",
    )
    parser.add_argument("--memory-limit-gib", type=float, help="cap GPU memory (simulates a smaller card)")
    parser.add_argument(
        "--decode-device", help="pipelined: decode (and encode text) on this device, e.g. cuda:1, beside denoising"
    )


def _fast_paths(args: argparse.Namespace):
    from .generation.fast_paths import FastPaths

    return FastPaths(
        fused_kernels=args.fused_kernels,
        fuse_qkv=args.fuse_qkv,
        compile=args.compile,
        attention=args.attention,
        batched_cfg=args.batched_cfg,
        vae_dtype=args.vae_dtype,
        vae_channels_last=args.vae_channels_last,
        vae_compile=args.vae_compile,
        fp8=args.fp8,
        cuda_graphs=args.cuda_graphs,
        overlap_vae=args.overlap_vae,
        offload=args.offload,
        memory_limit_gib=args.memory_limit_gib,
        decode_device=args.decode_device,
        vae_decoder=args.vae_decoder,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helios", description="Helios: real-time long video generation")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate a video from text, an image or a video")
    gen.add_argument(
        "--model",
        help="Helios model folder (diffusers layout), or default-mid (the embedded default's Mid teacher); "
        "default: the embedded default model (Distilled, 3 steps)",
    )
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="the text prompt")
    what.add_argument(
        "--prompts", metavar="FILE", help="prompt schedule: .json, .csv or one prompt per line (see docs)"
    )
    gen.add_argument("--negative-prompt", default="", help="negative prompt (CFG presets only)")
    source = gen.add_mutually_exclusive_group()
    source.add_argument("--image", help="image to continue from (I2V)")
    source.add_argument("--video", help="video to continue (V2V)")
    gen.add_argument(
        "--frames", type=int, default=132, help="frames to generate (rounded up to whole chunks: 33 frames each)"
    )
    gen.add_argument("--preset", choices=["helios-base", "helios-mid", "helios-distilled"], help="sampler preset")
    gen.add_argument("--steps", type=_steps, help="steps (one number, or one per pyramid stage: 2,2,2)")
    gen.add_argument("--guidance", type=float, help="guidance scale")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--transition", type=int, default=3, help="chunks over which scheduled prompts blend")
    gen.add_argument("--adaptive", action="store_true", help="adaptive sampling against drift (paper §3.5)")
    knobs = gen.add_argument_group("I2V / V2V conditioning (weak motion: more noise, or skip the first chunk)")
    knobs.add_argument(
        "--image-noise",
        metavar="SIGMA[,MAX]",
        help="noise σ on the conditioning image / first frame (default: the model's, 0.111,0.135)",
    )
    knobs.add_argument("--video-noise", metavar="SIGMA[,MAX]", help="noise σ on the conditioning history (V2V, I2V)")
    knobs.add_argument(
        "--skip-first-chunk",
        action="store_true",
        help="anchor on the first generated chunk instead of the input image / video's first frame",
    )
    knobs.add_argument(
        "--decoder-carry",
        action="store_true",
        help="decode each chunk with the previous chunk's causal context (Wan VAE, --vae-decoder helios)",
    )
    gen.add_argument("--shift-convention", choices=["diffusers", "official"], help="per-stage dynamic-shift mu")
    gen.add_argument("--out", default="outputs/helios.mp4", help="output MP4 (H.264, 24 fps)")
    gen.add_argument("--frames-dir", help="also write every frame as PNG into this folder")
    gen.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    gen.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="weights/activations of a model folder")
    _add_lora_argument(gen)
    _add_fast_path_arguments(gen.add_argument_group("fast paths (GPU; see benchmarks/README.md)"))
    _add_context_parallel_argument(gen)

    train = commands.add_parser(
        "train", help="train or fine-tune (stage 1 Base, 2 Mid, 3 Distilled); torchrun for several GPUs"
    )
    train.add_argument("--config", required=True, help="training config (.json or .yaml)")
    train.add_argument("--max-steps", type=int, help="stop at this step (default: the config's)")
    train.add_argument("--export", help="write the trained transformer (LoRA merged, EMA if kept) to this folder")

    off = commands.add_parser("offload", help="precompute per-chunk latents and caption embeddings for training")
    off.add_argument("--manifest", help="JSON list of {path, cap} (paths relative to it)")
    off.add_argument("--out", required=True, help="output folder of shards")
    off.add_argument(
        "--model", help="Helios model folder (Wan VAE + UMT5); default: the embedded default model's codec and encoder"
    )
    off.add_argument("--height", type=int, default=128)
    off.add_argument("--width", type=int, default=192)
    off.add_argument("--device", help="cpu, cuda, ...")
    off.add_argument(
        "--record-ode",
        metavar="SHARDS",
        help="instead: record the teacher's (--model, a pyramid Mid model) ODE pairs on these latent shards' "
        "real history, for stage 3 phase 'ode'",
    )
    off.add_argument("--pairs", type=int, default=256, help="with --record-ode: how many pairs")
    off.add_argument("--pairs-batch", type=int, default=8, help="with --record-ode: chunks per teacher run")
    off.add_argument("--seed", type=int, default=0)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    speed = bench_kinds.add_parser("speed", help="end-to-end FPS, time to first chunk, jitter, memory (random weights)")
    speed.add_argument("--size", choices=["14b", "tiny"], default="14b", help="component sizes (tiny: CPU-sized)")
    speed.add_argument(
        "--preset", choices=["helios-base", "helios-mid", "helios-distilled"], default="helios-distilled"
    )
    speed.add_argument("--frames", type=int, default=240)
    workload = speed.add_mutually_exclusive_group()
    workload.add_argument("--steps", type=_steps, help="override the preset's steps")
    workload.add_argument(
        "--workload",
        choices=["paper", "released", "both"],
        help="paper: 1/1/1 (the paper's 3 sampling steps); released: the preset's own (2/2/2 for Distilled); "
        "both: the two in one process",
    )
    speed.add_argument("--device", help="cuda (default when available) or cpu")
    speed.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    speed.add_argument(
        "--compare",
        choices=["diffusers", "diffusers-compiled"],
        help="also run diffusers' pipeline on the same weights (compiled: its regional compile + cuDNN attention)",
    )
    speed.add_argument("--out", help="write the results as JSON")
    _add_fast_path_arguments(speed)
    _add_context_parallel_argument(speed)
    speed.add_argument("--no-breakdown", action="store_true", help="skip the second run with per-call timers")

    hb = bench_kinds.add_parser("heliosbench", help="HeliosBench: generate the benchmark's videos, then score them")
    prompts = hb.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompts", metavar="CSV", help="the benchmark's prompt file (id, prompt, duration)")
    prompts.add_argument(
        "--world", type=int, metavar="N", help="the synthetic-world analogue: N held-out scenes, the strict judge"
    )
    hb.add_argument("--out", default="outputs/heliosbench", help="folder of the videos (and results.json)")
    hb.add_argument("--model", help="model folder, or default-mid; default: the embedded default model")
    hb.add_argument("--tiers", type=_tiers, help="durations to run (default all: 81,240,720,1440)")
    hb.add_argument("--score-only", action="store_true", help="score the videos already in --out")
    hb.add_argument("--preset", choices=["helios-base", "helios-mid", "helios-distilled"])
    hb.add_argument("--steps", type=_steps)
    hb.add_argument("--seed", type=int, default=0)
    hb.add_argument("--device", help="cpu, cuda, ...")
    hb.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    hb.add_argument(
        "--clip", help="a transformers CLIP ViT-L/14 folder: the CLIP semantic fallback (+ --aesthetic-head)"
    )
    hb.add_argument("--aesthetic-head", help="the LAION linear aesthetic head (.pth or .safetensors) for --clip")
    hb.add_argument(
        "--viclip",
        metavar="FOLDER",
        help="the folder of ViClip-InternVid-10M-FLT.pth and bpe_simple_vocab_16e6.txt.gz: the official "
        "semantic metric",
    )
    hb.add_argument(
        "--naturalness-url", help="OpenAI-compatible API base for naturalness (key: $HELIOS_NATURALNESS_KEY)"
    )
    hb.add_argument("--naturalness-model", help="the model name the naturalness endpoint serves")
    hb.add_argument(
        "--raft",
        metavar="WEIGHTS",
        help="torchvision RAFT weights (.pth/.safetensors or their folder): motion smoothness by flow "
        "interpolation instead of the weight-free linear fallback",
    )
    hb.add_argument(
        "--official-aesthetic-typo", action="store_true", help="the released long-aesthetic thresholds (see docs)"
    )

    serve = commands.add_parser("serve", help="live streaming server and web page")
    _add_context_parallel_argument(serve)
    serve.add_argument("--model", help="Helios model folder, or default-mid; default: the embedded default model")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help="require this token from clients (needed beyond loopback; or set HELIOS_TOKEN)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="also accept WebSocket sessions from pages of this origin (repeatable)",
    )
    serve.add_argument("--max-sessions", type=int, default=1)
    serve.add_argument("--queue", type=int, default=4, help="chunks buffered per session")
    serve.add_argument(
        "--slow-client",
        choices=["wait", "drop"],
        default="wait",
        help="when a client lags: pause generation (wait) or drop the oldest chunk (drop)",
    )
    serve.add_argument("--device", help="cpu, cuda, ...")
    serve.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    _add_lora_argument(serve)
    return parser


def run_heliosbench(args: argparse.Namespace) -> int:
    import torch

    from .bench.heliosbench import runner

    tiers = args.tiers or runner.TIERS
    unknown = sorted(set(tiers) - set(runner.TIERS))
    if unknown:
        raise UsageError(f"--tiers: {unknown} not among the benchmark's durations {list(runner.TIERS)}")
    if args.world is not None and args.world < 1:
        raise UsageError("--world needs a number of scenes ≥ 1")
    scenes = None
    if args.world is not None:
        prompts, scenes = runner.world_prompts(args.world, tiers)
    else:
        prompts = runner.read_prompt_csv(args.prompts)
    device = _device(args.device)
    generation = {}
    if not args.score_only:
        from .generation import HeliosPipeline

        pipeline = HeliosPipeline.from_pretrained(args.model, dtype=getattr(torch, DTYPES[args.dtype]), device=device)
        options = {k: v for k, v in (("preset", args.preset), ("steps", args.steps)) if v is not None}
        generation = runner.generate_videos(pipeline, prompts, args.out, tiers, args.seed, **options)
    chosen = [p for p in prompts if p.frames in tiers]
    scorers = runner.model_scorers(
        args.clip, args.aesthetic_head, args.naturalness_url, args.naturalness_model, str(device), args.viclip
    )
    if scenes is not None:
        scorers["semantic_world"] = runner.world_judge(scenes)
    width = None if scenes is not None else runner.metrics.WIDTH  # (the world analogue: its own width)
    smoothness = runner.raft_smoothness(args.raft, str(device)) if args.raft else None
    result = runner.score_folder(args.out, chosen, scorers, args.official_aesthetic_typo, width, smoothness)
    result = runner.with_throughput(result, generation)
    if scenes is not None:
        result["semantic_world_control"] = runner.world_control(args.out, chosen, scenes)
        print(f"semantic_world control (first 81 frames, next scene's prompt): {result['semantic_world_control']}")
    print(runner.report_table(result))
    print(f"wrote {runner.write_result(result, Path(args.out) / 'results.json')}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import torch

    if args.bench == "heliosbench":
        return run_heliosbench(args)

    from .bench.speed import run_benchmark
    from .parallel.launch import leave

    device = str(_device(args.device))
    fast = _fast_paths(args)
    try:  # (under torchrun: on every process, the sequence split over them)
        run_benchmark(
            args.size,
            args.preset,
            args.frames,
            device,
            args.compare,
            args.out,
            dtype=getattr(torch, DTYPES[args.dtype]),
            steps=args.steps,
            fast=fast,
            breakdown=not args.no_breakdown,
            workloads=_workloads(args.workload),
            context_parallel=args.context_parallel,
        )
    finally:
        leave()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import socket

    import torch

    from .generation import HeliosPipeline
    from .parallel import enable_context_parallel
    from .parallel.launch import is_main, join, launched_ranks, leave
    from .serve.app import ServeSettings, run
    from .serve.lockstep import LockstepPipeline, control_group, follow

    token = args.token or os.environ.get("HELIOS_TOKEN") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise UsageError(f"binding to {args.host} exposes the server: give --token (or set HELIOS_TOKEN)")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535, got {args.port}")
    settings = ServeSettings(
        max_sessions=args.max_sessions,
        queue_size=args.queue,
        slow_client=args.slow_client,
        token=token,
        allowed_origins=tuple(args.allow_origin or ()),
    )
    device = _device(args.device)
    loras = _lora_specs(args.lora)
    ranks = launched_ranks()
    if ranks > 1 and args.max_sessions != 1:
        raise UsageError(
            f"on several processes the server runs one session at a time: --max-sessions 1, not {args.max_sessions}"
        )
    if is_main():
        try:  # the port is checked before the model loads, not after
            with socket.create_server((args.host, args.port)):
                pass
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    if ranks > 1:  # under torchrun: the first process serves, the others follow it (serve/lockstep.py)
        device = join(device)
    try:
        pipeline = HeliosPipeline.from_pretrained(args.model, dtype=getattr(torch, DTYPES[args.dtype]), device=device)
        _apply_loras(pipeline, loras)
        if ranks == 1:
            run(pipeline, args.host, args.port, settings)
            return 0
        enable_context_parallel(pipeline.transformer, method=args.context_parallel)
        group = control_group()
        if not is_main():
            follow(pipeline, group)
            return 0
        print(f"helios: serving from the first of {ranks} processes (context parallelism)", file=sys.stderr)
        lockstep = LockstepPipeline(pipeline, group)
        try:
            run(lockstep, args.host, args.port, settings)
        finally:
            lockstep.close()
        return 0
    finally:
        leave()


def run_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .training.trainer import Trainer

    trainer = Trainer(TrainConfig.from_file(args.config))
    records = trainer.train(max_steps=args.max_steps)
    if args.export:
        trainer.export(args.export)
    if trainer.rank == 0 and records:
        print(f"trained to step {trainer.step}: loss {records[-1]['loss']:.4f}; checkpoints in {trainer.out}")
    return 0


def run_offload(args: argparse.Namespace) -> int:
    import torch

    from .generation import HeliosPipeline
    from .training.offload import offload

    device = _device(args.device)
    pipeline = HeliosPipeline.from_pretrained(args.model, dtype=torch.float32, device=device)
    if args.record_ode:
        from .training.ode_pairs import record_ode_pairs

        out = record_ode_pairs(
            pipeline.transformer,
            args.record_ode,
            args.out,
            pipeline.sampler,
            args.pairs,
            args.seed,
            device=device,
            batch_size=args.pairs_batch,
        )
        print(f"wrote {args.pairs} ODE pairs to {out}")
        return 0
    if not args.manifest:
        raise ValueError("helios offload needs --manifest (or --record-ode SHARDS)")
    out = offload(args.manifest, args.out, pipeline.codec, pipeline.text_encoder, args.height, args.width)
    print(f"wrote shards to {out}")
    return 0


def _progress(index: int, total: int | None, seconds: float) -> None:
    stream = sys.stderr  # looked up per call: callers (and tests) may have replaced it
    width = 24
    if total:
        filled = int(width * (index + 1) / total)
        bar = "█" * filled + "·" * (width - filled)
        stream.write(f"\rchunk {index + 1}/{total} |{bar}| {seconds:.2f} s/chunk")
    else:
        stream.write(f"\rchunk {index + 1} | {seconds:.2f} s/chunk")
    stream.flush()


def _device(name: str | None):
    """The device a command runs on, refused clearly when it does not exist here."""
    from .devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_output_file(path: str, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name such as {target / 'video.mp4'}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"{flag} {path}: {parent} is not writable")
            break


def _check_output_folder(path: str, flag: str) -> None:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    _check_output_file(str(target / "x"), flag)


def _warn_unknown_words(pipeline, prompts: list[str]) -> None:
    """Models with a closed vocabulary (the default model) ignore words they do not know: say so."""
    unknown_words = getattr(pipeline.text_encoder, "unknown_words", None)
    if unknown_words is None:
        return
    unknown = sorted({word for prompt in prompts for word in unknown_words(prompt)})
    if unknown:
        vocabulary = ", ".join(getattr(pipeline.text_encoder, "vocabulary", []))
        print(
            f"helios: warning: the model does not know {', '.join(map(repr, unknown))}; it reads only: {vocabulary}",
            file=sys.stderr,
        )


def run_generate(args: argparse.Namespace) -> int:
    from .generation import GenerationRequest
    from .generation.prompts import read_prompt_file
    from .parallel.launch import join, launched_ranks, leave

    # Everything that can be checked without the model is checked first: a bad flag costs nothing.
    device = _device(args.device)
    _check_output_file(args.out, "--out")
    if args.frames_dir:
        _check_output_folder(args.frames_dir, "--frames-dir")
    # A malformed prompt file fails here; its frames map to chunks once the model is known.
    provisional = read_prompt_file(args.prompts, 1, args.transition) if args.prompts else None
    if (args.image_noise or args.video_noise) and not (args.image or args.video):
        raise UsageError("--image-noise and --video-noise need --image or --video")
    request = GenerationRequest(
        prompt=args.prompt,
        prompts=provisional,
        negative_prompt=args.negative_prompt,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        image=args.image,
        video=args.video,
        seed=args.seed,
        preset=args.preset,
        steps=args.steps,
        guidance_scale=args.guidance,
        shift_convention=args.shift_convention,
        adaptive=args.adaptive,
        image_noise_sigma=_sigma(args.image_noise, "--image-noise"),
        video_noise_sigma=_sigma(args.video_noise, "--video-noise"),
        skip_first_chunk=args.skip_first_chunk,
        decoder_carry=args.decoder_carry,
    )
    loras = _lora_specs(args.lora)
    for flag, value in (("--image", args.image), ("--video", args.video)):
        if value is not None and not Path(value).is_file():
            what = "not found" if not Path(value).exists() else "is not a file"
            raise UsageError(f"{flag} {value} {what}")
    parallel = launched_ranks() > 1  # under torchrun: the work split over every process
    if parallel:
        device = join(device)
    try:
        return _generate(args, request, loras, device, parallel)
    finally:
        leave()


def _generate(args: argparse.Namespace, request, loras, device, parallel: bool) -> int:
    import dataclasses

    import numpy as np
    import torch

    from .generation import HeliosPipeline
    from .generation.prompts import read_prompt_file
    from .media import write_frames, write_mp4
    from .parallel import enable_context_parallel
    from .parallel.launch import is_main

    pipeline = HeliosPipeline.from_pretrained(args.model, dtype=getattr(torch, DTYPES[args.dtype]), device=device)
    _apply_loras(pipeline, loras)  # before the fast paths (FP8 replaces the linear layers)
    _fast_paths(args).apply(pipeline)
    main = is_main()  # every rank samples the same video; the first one reports and writes it
    if parallel:
        ranks = enable_context_parallel(pipeline.transformer, method=args.context_parallel).size
        if main:
            print(
                f"helios: context parallelism over {ranks} processes ({device.type}, {args.context_parallel})",
                file=sys.stderr,
            )
    if args.prompts:
        request = dataclasses.replace(
            request, prompts=read_prompt_file(args.prompts, pipeline.chunk_frames, args.transition)
        )
    started = time.perf_counter()
    stream = pipeline.run(request)  # validates the request against the model before any work
    _warn_unknown_words(pipeline, [c.prompt for c in request.prompt_changes()])
    total = pipeline.chunks_for(args.frames)
    frames, first_chunk = [], None
    for chunk in stream:
        first_chunk = first_chunk or chunk.since_start_seconds
        if not main:
            continue
        frames.append(chunk.frames)
        if args.frames_dir:
            write_frames(chunk.frames, args.frames_dir, start=chunk.first_frame)
        _progress(chunk.index, total, chunk.generation_seconds)
    if not main:
        return 0
    sys.stderr.write("\n")
    video = np.concatenate(frames)
    write_mp4(video, args.out, pipeline.fps)
    elapsed = time.perf_counter() - started
    print(
        f"wrote {args.out}: {len(video)} frames ({len(video) / pipeline.fps:.1f} s at {pipeline.fps} fps) "
        f"in {elapsed:.1f} s — {len(video) / elapsed:.2f} FPS, first chunk after {first_chunk:.2f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from .generation.loading import ModelFolderError
    from .media import MediaError
    from .model.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    handlers = {
        "generate": run_generate,
        "train": run_train,
        "offload": run_offload,
        "serve": run_serve,
        "bench": run_bench,
    }
    try:
        return handlers[args.command](args)
    except (UsageError, MediaError, CheckpointError, ModelFolderError, OSError, ValueError, ImportError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"helios: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("helios: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
