"""``HeliosPipeline``: text/image/video → video of any length, chunk by chunk (paper §3.1–3.5, §6).

The autoregressive loop lives here, once. ``stream()`` yields each chunk (33 frames for the released
models: ``pipeline.chunk_frames``) as soon as it is decoded and accepts live prompt changes;
``generate()`` is ``stream()`` collected into one video. Both take a :class:`GenerationRequest`'s
options; ``run(request)`` takes the request itself.

Output length rule (as the released pipelines, with c = chunk frames and tf = the codec's temporal
factor): ``chunks = ceil(num_frames / c)``; each chunk decodes to c frames; the whole video is cut to
``tf·⌊(c·chunks − 1)/tf⌋ + 1`` frames. For c = 33: 33 → 33, 100 → 129, 240 → 261.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import HistorySettings, SamplerSettings, sampler_preset
from ..encoders.protocols import TextEncoder, VideoCodec
from ..media import read_image, read_video, to_model_pixels, to_uint8_frames, write_frames, write_mp4
from ..model.transformer import HeliosTransformer
from ..model.window import window_frames
from ..sampling.chunk import ChunkSampler
from ..sampling.noise import NoiseDraws
from .drift import DriftMonitor, DriftSettings
from .history import HistoryWindow, condition_on_image, condition_on_video
from .overlap import ChunkDecoder, run_ahead
from .prompts import PromptChange, PromptSchedule
from .request import GenerationRequest

DEFAULT_FPS = 24  # Helios is trained on 24 fps video; the official export is hard-coded to 24


def output_frame_count(num_frames: int, chunk_frames: int, temporal_factor: int) -> int:
    """Frames returned for ``num_frames`` requested (see the module docstring)."""
    chunks = max(1, math.ceil(num_frames / chunk_frames))
    return (chunks * chunk_frames - 1) // temporal_factor * temporal_factor + 1


@dataclass
class VideoChunk:
    """One decoded chunk of a stream."""

    index: int
    frames: np.ndarray  # uint8 (T, H, W, 3)
    first_frame: int  # position of frames[0] in the whole video
    latents: torch.Tensor  # the chunk's clean latents (B, C, T', h, w)
    generation_seconds: float  # denoising + decoding of this chunk
    since_start_seconds: float  # from the call to the moment this chunk was ready
    prompt: str  # the prompt this chunk moves toward
    prompt_weight: float  # 1.0 unless it is inside a transition
    drift: bool = False  # adaptive sampling flagged this chunk


@dataclass
class Video:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: int
    latents: torch.Tensor  # all generated latents (B, C, T', h, w)
    chunks: list[VideoChunk] = field(repr=False, default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def save(self, path: str | Path) -> Path:
        return write_mp4(self.frames, path, self.fps)

    def save_frames(self, folder: str | Path) -> list[Path]:
        return write_frames(self.frames, folder)


class LiveStream:
    """Iterate to receive chunks as they finish; change the prompt or stop while it runs."""

    def __init__(self, run: Iterator[VideoChunk], schedule: PromptSchedule, state: _StreamState):
        self._run = run
        self._schedule = schedule
        self._state = state

    def __iter__(self) -> Iterator[VideoChunk]:
        return self._run

    def __next__(self) -> VideoChunk:
        return next(self._run)

    def update_prompt(self, prompt: str, transition: int = 1) -> int:
        """Switch to ``prompt`` from the next chunk on, interpolating over ``transition`` chunks
        (1 = hard cut). Returns the chunk index where the change starts."""
        with self._state.lock:
            start = self._state.started + 1
            self._schedule.add(PromptChange(start, prompt, transition))
        return start

    def stop(self) -> None:
        """End the stream: the chunk in progress is abandoned at its next sampling step."""
        self._state.stopped = True

    @property
    def schedule(self) -> PromptSchedule:
        return self._schedule


@dataclass
class _StreamState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: int = -1  # index of the chunk being generated (or last generated)
    stopped: bool = False


class _Cancelled(Exception):
    """Raised inside the sampling loop of a stopped stream; ends the loop without a chunk."""


@dataclass
class _Denoised:
    index: int
    latents: torch.Tensor  # float32 (B, C, T', h, w)
    started: float  # perf_counter when its denoising began
    prompt: str
    prompt_weight: float
    drift: bool


@dataclass(frozen=True)
class _Plan:
    """A request resolved against this pipeline: sampler, size, pixels and prompt schedule."""

    request: GenerationRequest
    settings: SamplerSettings
    schedule: PromptSchedule
    height: int
    width: int
    image: torch.Tensor | None  # (1, 3, 1, H, W) in [−1, 1]
    video: torch.Tensor | None  # (1, 3, T, H, W) in [−1, 1]


class HeliosPipeline:
    """Helios generation from a transformer, a text encoder and a video codec.

    Execution options (attributes, default off; outputs are the same either way):
    ``overlap_decode`` decodes each chunk on a second CUDA stream while the next one is denoised
    (generation.overlap); ``batched_cfg`` runs the conditional and unconditional forwards as one batch.
    """

    overlap_decode: bool = False
    batched_cfg: bool = False
    # Adaptive-sampling thresholds for this model's codec (the released Wan ones unless the model
    # folder stores calibrated ones, drift.json).
    drift_settings: DriftSettings = DriftSettings()

    def __init__(
        self,
        transformer: HeliosTransformer,
        text_encoder: TextEncoder,
        codec: VideoCodec,
        sampler: SamplerSettings | str = "helios-distilled",
        history: HistorySettings = HistorySettings(),
        height: int = 384,
        width: int = 640,
        fps: int = DEFAULT_FPS,
    ):
        self.transformer = transformer.eval()
        self.text_encoder = text_encoder
        self.codec = codec
        self.sampler = sampler_preset(sampler) if isinstance(sampler, str) else sampler
        self.history = history
        self.height, self.width, self.fps = height, width, fps

    # ------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device | None = None,
        preset: str | None = None,
    ) -> HeliosPipeline:
        """Load a diffusers-layout Helios folder (``model_index.json``, ``transformer/``, ``vae/``,
        ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or the embedded default model when no
        path is given."""
        from .loading import load_default_pipeline, load_pipeline_folder

        device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        if path is None:
            return load_default_pipeline(cls, device=device, preset=preset)
        return load_pipeline_folder(cls, Path(path), dtype=dtype, device=device, preset=preset)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    # ------------------------------------------------------------------------------ chunk geometry

    @property
    def chunk_frames(self) -> int:
        """Video frames per chunk: (latent frames − 1)·temporal factor + 1 (33 for the released models)."""
        return self.history.chunk_video_frames(self.codec.temporal_factor)

    def chunks_for(self, num_frames: int) -> int:
        """Chunks generated for ``num_frames`` requested frames."""
        return max(1, math.ceil(num_frames / self.chunk_frames))

    @property
    def v2v_frames(self) -> int:
        """Frames of an input video that can reach the history window: the last whole chunks that
        cover it (plus the first frame, the anchor); older frames are not read into memory."""
        return self.chunk_frames * (math.ceil(window_frames(self.history) / self.history.chunk_latent_frames) + 1)

    def output_frames(self, num_frames: int) -> int:
        """Frames returned for ``num_frames`` requested (see the module docstring)."""
        return output_frame_count(num_frames, self.chunk_frames, self.codec.temporal_factor)

    # ------------------------------------------------------------------------------ LoRA (diffusers' names)

    def load_lora_weights(self, source, adapter_name: str | None = None, **options: Any) -> str:
        """Load a LoRA file (diffusers, Wan or musubi/kohya format) into the transformer; it is active
        beside the adapters already loaded. Returns the adapter's name."""
        return self.transformer.load_lora_adapter(source, adapter_name=adapter_name, **options)

    def set_adapters(self, adapter_names: str | list[str], adapter_weights: float | list[float] | None = None) -> None:
        self.transformer.set_adapters(adapter_names, adapter_weights)

    def get_active_adapters(self) -> list[str]:
        return self.transformer.get_active_adapters()

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names: list[str] | None = None) -> None:
        self.transformer.fuse_lora(lora_scale, adapter_names)

    def unfuse_lora(self) -> None:
        self.transformer.unfuse_lora()

    def unload_lora_weights(self) -> None:
        self.transformer.unload_lora()

    # ------------------------------------------------------------------------------ public API

    def generate(self, prompt: str | None = None, **options: Any) -> Video:
        """Generate a whole video. Same options as :meth:`stream`; ``num_frames`` must be finite."""
        if options.get("num_frames", 1) is None:
            raise ValueError("generate() needs a finite num_frames; use stream() to run until stopped")
        chunks = list(self.stream(prompt, **options))
        frames = np.concatenate([c.frames for c in chunks])
        latents = torch.cat([c.latents for c in chunks], dim=2)
        for chunk in chunks:  # views into the video: the pixels are held once
            chunk.frames = frames[chunk.first_frame : chunk.first_frame + len(chunk.frames)]
        return Video(frames=frames, fps=self.fps, latents=latents, chunks=chunks)

    def stream(self, prompt: str | None = None, **options: Any) -> LiveStream:
        """Start generating; iterate the result for :class:`VideoChunk` s as they are decoded.
        ``options`` are the fields of :class:`GenerationRequest`."""
        return self.run(GenerationRequest(prompt=prompt, **options))

    def run(self, request: GenerationRequest) -> LiveStream:
        """Start generating ``request``; iterate the result for chunks as they are decoded."""
        plan = self._plan(request)
        state = _StreamState()
        return LiveStream(self._run(plan, state), plan.schedule, state)

    # ------------------------------------------------------------------------------ the loop

    def _plan(self, request: GenerationRequest) -> _Plan:
        """Validate and resolve everything before any work starts, so bad input fails here."""
        settings = self._sampler_settings(request)
        height = self.height if request.height is None else request.height
        width = self.width if request.width is None else request.width
        self._check_size(height, width, settings)
        schedule = PromptSchedule(request.prompt_changes(), self._encode_text)
        image = self._load_pixels(request.image, height, width, still=True) if request.image is not None else None
        video = self._load_pixels(request.video, height, width, still=False) if request.video is not None else None
        return _Plan(request, settings, schedule, height, width, image, video)

    def _run(self, plan: _Plan, state: _StreamState) -> Iterator[VideoChunk]:
        """Denoise chunk after chunk and decode each; with ``overlap_decode`` the denoising runs on a
        worker thread and each decode on a second CUDA stream (see overlap.py)."""
        started = time.perf_counter()
        num_frames = plan.request.num_frames
        total_frames = None if num_frames is None else self.output_frames(num_frames)
        denoised = self._denoise(plan, state)
        decoder = ChunkDecoder(self._decode_on_device, self.device, side_stream=self.overlap_decode)

        def submit(chunk: _Denoised):
            return chunk, decoder.submit(chunk.latents)

        def stop():
            state.stopped = True

        pairs = run_ahead(denoised, submit, stop) if self.overlap_decode else map(submit, denoised)
        emitted = 0
        for chunk, pending in pairs:
            frames = pending.wait()
            if total_frames is not None:
                frames = frames[: total_frames - emitted]
            now = time.perf_counter()
            yield VideoChunk(
                index=chunk.index,
                frames=frames,
                first_frame=emitted,
                latents=chunk.latents,
                generation_seconds=now - chunk.started,
                since_start_seconds=now - started,
                prompt=chunk.prompt,
                prompt_weight=chunk.prompt_weight,
                drift=chunk.drift,
            )
            emitted += len(frames)

    @torch.inference_mode()
    def _decode_on_device(self, latents: torch.Tensor) -> torch.Tensor:
        return to_uint8_frames(self.codec.decode(latents))

    @torch.inference_mode()
    def _denoise(self, plan: _Plan, state: _StreamState) -> Iterator[_Denoised]:
        """The autoregressive loop: one denoised chunk (float32 latents) per iteration."""
        request, settings, schedule = plan.request, plan.settings, plan.schedule
        device, dtype = self.device, self.transformer.dtype
        codec = self.codec
        num_chunks = None if request.num_frames is None else self.chunks_for(request.num_frames)
        latent_h, latent_w = plan.height // codec.spatial_factor, plan.width // codec.spatial_factor

        draw = NoiseDraws(torch.Generator().manual_seed(request.seed), device)
        negative = self._encode_text([request.negative_prompt]).to(device, dtype) if settings.uses_cfg else None
        window = HistoryWindow(
            request.history_settings(self.history), 1, codec.latent_channels, latent_h, latent_w, device
        )
        if plan.image is not None:
            condition_on_image(window, codec, plan.image, draw)
        if plan.video is not None:
            condition_on_video(window, codec, plan.video, draw)
        sampler = ChunkSampler(settings, self.transformer.config.patch_size, dtype, batched_cfg=self.batched_cfg)
        drift = request.drift(self.drift_settings)
        monitor = DriftMonitor(drift, seed=request.seed + 1) if drift is not None else None

        k = 0
        while (num_chunks is None or k < num_chunks) and not state.stopped:
            with state.lock:
                state.started = k
            chunk_started = time.perf_counter()
            history = window.history_inputs(dtype)
            _, current, weight = schedule.weights_for_chunk(k)
            text = schedule.embedding_for_chunk(k).to(device, dtype)

            def model(latents, timestep, embedding, history=history):
                if state.stopped:  # a stopped stream (or a client that left) ends within one step
                    raise _Cancelled
                if latents.shape[0] > 1:  # batched CFG: one history serves both halves
                    history = history.expand(latents.shape[0])
                return self.transformer(latents, timestep, embedding, history=history)

            noise = draw.normal((1, codec.latent_channels, self.history.chunk_latent_frames, latent_h, latent_w))
            try:
                latents = sampler.sample(model, noise, text, negative, draw, first_chunk=k == 0)
            except _Cancelled:
                return
            if self.history.keep_first_frame and (
                (k == 0 and window.anchor is None) or (request.skip_first_chunk and k == 1)
            ):
                window.anchor = latents[:, :, :1]
            window.append(latents)
            clean = latents.float()
            drifting = False
            if monitor is not None:
                drifting = monitor.observe(latents)
                if drifting:
                    window.replace_newest(monitor.corrupt(clean))
            window.trim()
            yield _Denoised(k, clean, chunk_started, current, weight, drifting)
            k += 1

    # ------------------------------------------------------------------------------ helpers

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self.text_encoder.encode(prompts)

    def _sampler_settings(self, request: GenerationRequest) -> SamplerSettings:
        preset, steps = request.preset, request.steps
        settings = self.sampler if preset is None else (sampler_preset(preset) if isinstance(preset, str) else preset)
        changes: dict[str, Any] = {}
        if steps is not None:
            if settings.pyramid_steps is not None:
                per_stage = (steps,) * len(settings.pyramid_steps) if isinstance(steps, int) else tuple(steps)
                if len(per_stage) != len(settings.pyramid_steps):
                    raise ValueError(
                        f"steps needs {len(settings.pyramid_steps)} values (one per pyramid stage), "
                        f"got {len(per_stage)}"
                    )
                changes["pyramid_steps"] = tuple(int(s) for s in per_stage)
            else:
                if not isinstance(steps, int):
                    raise ValueError(f"preset {settings.name!r} has one stage: steps must be one number")
                changes["steps"] = steps
        if request.guidance_scale is not None:
            changes["guidance_scale"] = float(request.guidance_scale)
        if request.shift_convention is not None:
            changes["shift_convention"] = request.shift_convention
        return replace(settings, **changes) if changes else settings

    def _check_size(self, height: int, width: int, settings: SamplerSettings) -> None:
        stages = len(settings.pyramid_steps) if settings.pyramid_steps else 1
        _, ph, pw = self.transformer.config.patch_size
        multiple = self.codec.spatial_factor * max(ph, pw) * 2 ** (stages - 1)
        for name, value in (("height", height), ("width", width)):
            if value < multiple or value % multiple:
                raise ValueError(
                    f"{name} {value} must be a positive multiple of {multiple} "
                    f"(VAE ×{self.codec.spatial_factor}, patch ×{max(ph, pw)}, {stages}-stage pyramid)"
                )

    def _load_pixels(self, source: Any, height: int, width: int, still: bool) -> torch.Tensor:
        """A path, uint8 array ((H, W, 3) image or (T, H, W, 3) video) or [−1, 1] tensor → (1, 3, T, H, W)."""
        if isinstance(source, torch.Tensor):
            tensor = source if source.ndim == 5 else source.unsqueeze(0)
            if still and tensor.ndim == 4:
                tensor = tensor.unsqueeze(2)
            if tensor.ndim != 5 or tensor.shape[1] != 3 or tuple(tensor.shape[-2:]) != (height, width):
                raise ValueError(
                    f"a pixel tensor must be (1, 3, T, {height}, {width}) in [-1, 1]; got {tuple(source.shape)}"
                )
            return tensor.float()
        if isinstance(source, (str, Path)):
            size = (height, width)
            if still:
                array = read_image(source, size=size)
            else:
                array = read_video(source, size=size, keep_last=self.v2v_frames)[0]
        else:
            array = np.asarray(source)
        if still:
            if array.ndim != 3 or array.shape[-1] != 3:
                raise ValueError(f"an image must be (H, W, 3) uint8; got shape {array.shape}")
            array = array[None]
        elif array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"a video must be (T, H, W, 3) uint8; got shape {array.shape}")
        if array.dtype != np.uint8:
            raise ValueError(f"image/video arrays must be uint8, got {array.dtype}")
        return to_model_pixels(array, height, width)
