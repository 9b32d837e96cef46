"""``helios bench speed``: an end-to-end throughput benchmark with a stated definition.

Definitions (printed with every result):
  end-to-end FPS  = returned frames / wall time of one ``generate`` call, from the prompt string to
                    the last decoded frame on the host (text encoding, every transformer call, every
                    VAE decode and the device→host copy included); warm-up excluded, reported apart.
  time to first chunk = from the call until chunk 0's frames are on the host.
  chunk latency   = denoising + decoding time of each chunk; jitter = its standard deviation over
                    the chunks after the first.
  transformer / VAE time = time spent inside transformer forwards / codec decodes (device-synchronised).
  peak GPU memory = torch.cuda.max_memory_allocated during the timed call; peak host RSS = the
                    process's maximum resident set size.

Components are built with random weights directly on the device (no download): ``--size 14b`` is the
released architecture (UMT5-XXL, Wan2.1 VAE), ``--size tiny`` a CPU-sized stand-in.
``--compare diffusers`` runs diffusers' pipeline on the same weights in the same process.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from ..config import HELIOS_14B, TINY, SamplerSettings, sampler_preset
from ..encoders.text import UMT5TextEncoder
from ..encoders.video import WanVideoCodec
from ..generation import HeliosPipeline
from ..generation.fast_paths import FastPaths
from ..model.transformer import HeliosTransformer
from ..parallel import enable_context_parallel
from ..parallel.launch import is_main, join, launched_ranks

PROMPT = "A red fox runs through fresh snow in a pine forest at sunrise, cinematic tracking shot."
SIZES = {
    "14b": dict(
        transformer=HELIOS_14B,
        umt5=dict(
            vocab_size=256384,
            d_model=4096,
            d_kv=64,
            d_ff=10240,
            num_layers=24,
            num_heads=64,
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
        ),
        vae=dict(),
        height=384,
        width=640,
    ),
    "tiny": dict(
        transformer=TINY,
        umt5=dict(
            vocab_size=64,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
        ),
        vae=dict(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
        height=64,
        width=64,
    ),
}


@dataclass
class SpeedResult:
    implementation: str
    preset: str
    returned_frames: int
    wall_seconds: float
    end_to_end_fps: float
    time_to_first_chunk_s: float | None
    chunk_latency_s: list[float] = field(default_factory=list)
    chunk_jitter_s: float | None = None
    transformer_seconds: float | None = None
    transformer_calls: int | None = None
    vae_seconds: float | None = None
    peak_gpu_gib: float | None = None
    peak_host_rss_gib: float | None = None
    steps: str | None = None  # the workload: steps per pyramid stage ("1/1/1") or "N steps"


def word_tokenizer(text: str = PROMPT):
    """A word-level tokenizer (the UMT5 sentencepiece model needs the hub; the encoder's cost depends
    only on the 512 padded tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(text.lower().replace(",", " ").replace(".", " ").split()))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def umt5_config(size: str):
    """UMT5-XXL's encoder layout ("14b") or its CPU-sized shrink ("tiny"), T5 token ids."""
    from transformers import UMT5Config

    return UMT5Config(
        **SIZES[size]["umt5"],
        feed_forward_proj="gated-gelu",
        dense_act_fn="gelu_new",
        is_gated_act=True,
        pad_token_id=0,
        eos_token_id=1,
    )


def build_pipeline(
    size: str,
    preset: str | SamplerSettings,
    device: str,
    dtype: torch.dtype,
    vae_dtype: torch.dtype = torch.float32,
    text_length: int = 512,
) -> HeliosPipeline:
    from diffusers import AutoencoderKLWan
    from transformers import UMT5EncoderModel

    spec = SIZES[size]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = HeliosTransformer.from_config(spec["transformer"]).cast(dtype).eval()
            umt5 = UMT5EncoderModel(umt5_config(size)).eval()
    finally:
        torch.set_default_dtype(previous)
    with torch.device(device):
        vae = AutoencoderKLWan(**spec["vae"]).to(vae_dtype).eval()
    text = UMT5TextEncoder(word_tokenizer(), umt5, max_length=text_length)
    return HeliosPipeline(
        transformer, text, WanVideoCodec(vae), sampler=preset, height=spec["height"], width=spec["width"]
    )


@contextmanager
def _timed_calls(module, method: str, totals: dict, device: torch.device):
    """Add the device-synchronised time of every ``module.method`` call to ``totals``."""
    original = getattr(module, method)

    def wrapper(*args, **kwargs):
        _sync(device)
        started = time.perf_counter()
        out = original(*args, **kwargs)
        _sync(device)
        totals["seconds"] += time.perf_counter() - started
        totals["calls"] += 1
        return out

    setattr(module, method, wrapper)
    try:
        yield
    finally:
        setattr(module, method, original)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_ours(pipeline: HeliosPipeline, frames: int, seed: int = 0, breakdown: bool = True) -> SpeedResult:
    """Time one generate() call (after a one-chunk warm-up). With ``breakdown`` the transformer and VAE
    are synchronised around each call, which costs a little overlap; run without it for the headline."""
    device = pipeline.device
    pipeline.generate(PROMPT, num_frames=pipeline.chunk_frames, seed=seed)  # warm-up: kernels, allocator, plans
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    transformer, vae = {"seconds": 0.0, "calls": 0}, {"seconds": 0.0, "calls": 0}
    with (
        _timed_calls(pipeline.transformer, "forward", transformer, device) if breakdown else _null(),
        _timed_calls(pipeline.codec, "decode", vae, device) if breakdown else _null(),
    ):
        started = time.perf_counter()
        video = pipeline.generate(PROMPT, num_frames=frames, seed=seed + 1)
        wall = time.perf_counter() - started
    latencies = [c.generation_seconds for c in video.chunks]
    steady = latencies[1:] or latencies
    return SpeedResult(
        implementation="helios" + ("" if not breakdown else " (breakdown timers on)"),
        preset=pipeline.sampler.name,
        returned_frames=len(video.frames),
        wall_seconds=wall,
        end_to_end_fps=len(video.frames) / wall,
        time_to_first_chunk_s=video.chunks[0].since_start_seconds,
        chunk_latency_s=latencies,
        chunk_jitter_s=statistics.pstdev(steady) if len(steady) > 1 else 0.0,
        transformer_seconds=transformer["seconds"] if breakdown else None,
        transformer_calls=transformer["calls"] if breakdown else None,
        vae_seconds=vae["seconds"] if breakdown else None,
        peak_gpu_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        peak_host_rss_gib=_peak_rss_gib(),
    )


@contextmanager
def _null():
    yield


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def measure_diffusers(
    pipeline: HeliosPipeline,
    frames: int,
    seed: int = 0,
    compile: bool = False,
    attention: str | None = None,
    ulysses: int = 1,
) -> SpeedResult:
    """diffusers' Helios pipeline on the *same* weights (its transformer shares our parameter tensors),
    the same VAE and prompt embeddings from the same encoder; timed the same way. ``compile``: its
    own regional compilation (``compile_repeated_blocks``); ``attention``: a diffusers attention
    backend name (e.g. ``_native_cudnn``); ``ulysses``: its own context parallelism over that many
    ranks (``enable_parallelism``; its compile then runs with ``fullgraph=False``, as ``True`` fails)."""
    from diffusers import HeliosDMDScheduler, HeliosPyramidPipeline, HeliosScheduler, HeliosTransformer3DModel
    from diffusers import HeliosPipeline as DiffusersBase

    settings = pipeline.sampler
    device = pipeline.device
    with torch.device("meta"):
        reference = HeliosTransformer3DModel(**pipeline.transformer.config.diffusers_kwargs())
    reference.load_state_dict(pipeline.transformer.state_dict(), assign=True)
    with torch.device(device):  # its RoPE frequencies are non-persistent buffers, not in the state dict
        reference.rope = type(reference.rope)(
            rope_dim=pipeline.transformer.config.rope_dim, theta=pipeline.transformer.config.rope_theta
        )
    reference.eval()
    if attention:
        reference.set_attention_backend(attention)
    if ulysses > 1:
        from diffusers import ContextParallelConfig

        reference.enable_parallelism(config=ContextParallelConfig(ulysses_degree=ulysses))
    if compile:
        reference.compile_repeated_blocks(fullgraph=ulysses == 1)
    vae = pipeline.codec.vae
    shift = settings.shift
    scheduler_kwargs = dict(use_dynamic_shifting=shift.kind is not None, time_shift_type=shift.kind or "linear")
    if settings.sampler == "dmd":
        pipe = HeliosPyramidPipeline(
            None, None, vae, HeliosDMDScheduler(**scheduler_kwargs), reference, is_distilled=True
        )
        kwargs = dict(
            pyramid_num_inference_steps_list=list(settings.pyramid_steps),
            guidance_scale=1.0,
            is_amplify_first_chunk=settings.amplify_first_chunk,
        )
    elif settings.pyramid_steps is not None:
        pipe = HeliosPyramidPipeline(
            None,
            None,
            vae,
            HeliosScheduler(stages=3, **scheduler_kwargs),
            reference,
            is_cfg_zero_star=settings.cfg_zero_star,
        )
        kwargs = dict(
            pyramid_num_inference_steps_list=list(settings.pyramid_steps),
            guidance_scale=settings.guidance_scale,
            use_zero_init=settings.zero_init_steps is not None,
            zero_steps=settings.zero_init_steps or 0,
        )
    else:
        pipe = DiffusersBase(None, None, vae, HeliosScheduler(stages=1, **scheduler_kwargs), reference)
        kwargs = dict(num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale)
    pipe.set_progress_bar_config(disable=True)

    def run(num_frames: int, run_seed: int):
        prompt = pipeline.text_encoder.encode([PROMPT]).to(device, pipeline.transformer.dtype)
        negative = (
            pipeline.text_encoder.encode([""]).to(device, pipeline.transformer.dtype) if settings.uses_cfg else None
        )
        with torch.no_grad():
            return pipe(
                prompt_embeds=prompt,
                negative_prompt_embeds=negative,
                height=pipeline.height,
                width=pipeline.width,
                num_frames=num_frames,
                generator=torch.Generator().manual_seed(run_seed),
                output_type="np",
                **kwargs,
            ).frames

    run(pipeline.chunk_frames, seed)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    video = run(frames, seed + 1)
    wall = time.perf_counter() - started
    returned = video.shape[1]
    label = "+".join(
        part
        for part in (
            "compile" if compile else "",
            f"attention={attention}" if attention else "",
            "vae=bf16" if vae.dtype == torch.bfloat16 else "",
        )
        if part
    )
    return SpeedResult(
        implementation=f"diffusers 0.42.1 [{label or 'eager'}]",
        preset=settings.name,
        returned_frames=returned,
        wall_seconds=wall,
        end_to_end_fps=returned / wall,
        time_to_first_chunk_s=None,
        peak_gpu_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        peak_host_rss_gib=_peak_rss_gib(),
    )


def format_table(results: list[SpeedResult]) -> str:
    lines = [
        "| implementation | preset | steps | frames | wall s | end-to-end FPS | first chunk s | chunk s (± jitter) "
        "| transformer s (calls) | VAE s | peak GPU GiB | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(value, fmt):
        return "–" if value is None else format(value, fmt)

    for r in results:
        steady = r.chunk_latency_s[1:] or r.chunk_latency_s
        chunk = f"{statistics.mean(steady):.2f} (±{r.chunk_jitter_s:.2f})" if steady else "–"
        calls = f"{r.transformer_seconds:.1f} ({r.transformer_calls})" if r.transformer_seconds is not None else "–"
        lines.append(
            f"| {r.implementation} | {r.preset} | {r.steps or '–'} | {r.returned_frames} | {r.wall_seconds:.2f} | "
            f"{r.end_to_end_fps:.2f} | "
            f"{f(r.time_to_first_chunk_s, '.2f')} | {chunk} | {calls} | {f(r.vae_seconds, '.2f')} | "
            f"{f(r.peak_gpu_gib, '.1f')} | {f(r.peak_host_rss_gib, '.2f')} |"
        )
    return "\n".join(lines)


# Named workloads: the paper's 3 sampling steps (§5.1, the figure its 19.5 FPS is for) and the released
# scripts' 2/2/2 (the Distilled preset's default). "both" measures the two in one process.
WORKLOADS = {"paper": [1, 1, 1], "released": None}


def with_steps(settings: SamplerSettings, steps: list[int] | int | None) -> SamplerSettings:
    """The preset with its steps overridden (a list: one per pyramid stage)."""
    from dataclasses import replace

    if steps is None:
        return settings
    if settings.pyramid_steps:
        return replace(settings, pyramid_steps=tuple(steps) if isinstance(steps, list) else (steps,) * 3)
    return replace(settings, steps=int(steps))


def steps_label(settings: SamplerSettings) -> str:
    return "/".join(map(str, settings.pyramid_steps)) if settings.pyramid_steps else f"{settings.steps} steps"


def run_benchmark(
    size: str,
    preset: str,
    frames: int,
    device: str,
    compare: str | None,
    out: str | None,
    dtype: torch.dtype = torch.bfloat16,
    steps: list[int] | int | None = None,
    fast: FastPaths = FastPaths(),
    breakdown: bool = True,
    workloads: list[list[int] | int | None] | None = None,
    context_parallel: str = "ulysses",
) -> list[SpeedResult]:
    """Time ours (and diffusers with ``compare``) on one set of random weights, for ``steps`` or for
    each of ``workloads`` (step settings) in turn; under torchrun on every process."""
    all_settings = [with_steps(sampler_preset(preset), s) for s in (workloads or [steps])]
    vae_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[fast.vae_dtype]
    ranks = launched_ranks()
    if ranks > 1:  # under torchrun: both implementations split the sequence over the processes
        device = str(join(torch.device(device)))
        torch.manual_seed(0)  # the same random weights on every rank
    pipeline = build_pipeline(size, all_settings[0], device, dtype, vae_dtype=vae_dtype)
    # diffusers first: our fast paths (FP8 in place, offload) change the shared weights.
    baselines = []
    for settings in all_settings if compare else []:
        pipeline.sampler = settings
        baseline = measure_diffusers(
            pipeline,
            frames,
            compile=compare == "diffusers-compiled",
            attention="_native_cudnn" if compare == "diffusers-compiled" else None,
            ulysses=ranks,
        )
        baseline.implementation += f" ×{ranks} ranks (its Ulysses)" if ranks > 1 else ""
        baselines.append(baseline)
    fast.apply(pipeline)
    if ranks > 1:
        enable_context_parallel(pipeline.transformer, method=context_parallel)
    split = (" (ring attention)" if context_parallel == "ring" else " (Ulysses)") if ranks > 1 else ""
    results, ratios = [], []
    for index, settings in enumerate(all_settings):
        pipeline.sampler = settings
        ours = [measure_ours(pipeline, frames, breakdown=False)]
        if breakdown:
            ours.append(measure_ours(pipeline, frames, breakdown=True))
        for result in ours:
            result.implementation += f" [{fast.label()}]" + (f" ×{ranks} ranks{split}" if ranks > 1 else "")
        for result in ours + baselines[index : index + 1]:
            result.steps = steps_label(settings)
        results += ours + baselines[index : index + 1]
        if baselines:
            ratios.append((settings, ours[0].end_to_end_fps / baselines[index].end_to_end_fps))
    if not is_main():
        return results
    table = format_table(results)
    print(
        __doc__.split("Definitions")[1]
        .split("Components")[0]
        .strip()
        .replace("(printed with every result):", "Definitions:")
    )
    print(table)
    for (settings, ratio), baseline in zip(ratios, baselines):
        print(f"speed-up over {baseline.implementation} at {steps_label(settings)}: {ratio:.2f}×")
    if out:
        meta = dict(
            size=size,
            preset=preset,
            steps=[steps_label(settings) for settings in all_settings],
            frames=frames,
            device=str(pipeline.device),
            fast_paths=asdict(fast),
            card=torch.cuda.get_device_name() if pipeline.device.type == "cuda" else "cpu",
            torch=torch.__version__,
            date=time.strftime("%Y-%m-%d"),
            command=" ".join(sys.argv),
            ranks=ranks,
        )
        with open(out, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in results]}, f, indent=2)
    return results
