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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import HistorySettings, SamplerSettings, sampler_preset
from ..devices import resolve_device
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
    frames: np.ndarray  # uint8 (T, H, W, 3); a batch's (B, T, H, W, 3)
    first_frame: int  # position of frames[0] in the whole video
    latents: torch.Tensor  # the chunk's clean latents (B, C, T', h, w)
    generation_seconds: float  # denoising + decoding of this chunk
    since_start_seconds: float  # from the call to the moment this chunk was ready
    prompt: str  # the prompt this chunk moves toward
    prompt_weight: float  # 1.0 unless it is inside a transition
    drift: bool = False  # adaptive sampling flagged this chunk


OUTPUT_TYPES = ("np", "pt", "uint8", "latent")


@dataclass
class HeliosOutput:
    """What a diffusers-style call returns: ``frames`` as its ``output_type`` says."""

    frames: Any

    def __getitem__(self, index: int) -> Any:
        return (self.frames,)[index]


@dataclass
class Video:
    frames: np.ndarray  # uint8 (T, H, W, 3); a batch's (B, T, H, W, 3) — see split()
    fps: int
    latents: torch.Tensor  # all generated latents (B, C, T', h, w)
    chunks: list[VideoChunk] = field(repr=False, default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0] if self.frames.ndim == 5 else 1

    @property
    def seconds(self) -> float:
        return self.frames.shape[-4] / self.fps

    def split(self) -> list[Video]:
        """The videos of a batch, each on its own (a one-video batch: itself)."""
        if self.frames.ndim == 4:
            return [self]
        return [Video(self.frames[i], self.fps, self.latents[i : i + 1]) for i in range(self.batch_size)]

    def save(self, path: str | Path) -> Path:
        self._single("save")
        return write_mp4(self.frames, path, self.fps)

    def save_frames(self, folder: str | Path) -> list[Path]:
        self._single("save_frames")
        return write_frames(self.frames, folder)

    def _single(self, what: str) -> None:
        if self.frames.ndim == 5:
            raise ValueError(f"a batch of {self.batch_size} videos: {what} each of video.split()")


class LiveStream:
    """Iterate to receive chunks as they finish; change the prompt or stop while it runs."""

    def __init__(self, run: Iterator[VideoChunk], schedules: list[PromptSchedule], state: _StreamState):
        self._run = run
        self._schedules = schedules
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
            for schedule in self._schedules:  # every video of a batch
                schedule.add(PromptChange(start, prompt, transition))
        return start

    @property
    def next_index(self) -> int:
        """The chunk a prompt change made now would start at."""
        with self._state.lock:
            return self._state.started + 1

    def stop(self) -> None:
        """End the stream: the chunk in progress is abandoned at its next sampling step."""
        self._state.stopped = True

    @property
    def schedule(self) -> PromptSchedule:
        """The prompt schedule (of the first video, in a batch)."""
        return self._schedules[0]


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


def _require_finite(options: dict) -> None:
    if options.get("num_frames", 1) is None:
        raise ValueError("a whole video needs a finite num_frames; use stream() to run until stopped")


class _StepCallback:
    """diffusers' ``callback_on_step_end(pipeline, step, timestep, {"latents", "prompt_embeds"})`` after
    every sampling step of a run (``step`` counts them all); the dict it returns may replace the latents."""

    def __init__(self, pipeline, callback):
        self.pipeline, self.callback = pipeline, callback
        self.step = 0
        self.text: torch.Tensor | None = None

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        result = self.callback(self.pipeline, self.step, timestep, {"latents": latents, "prompt_embeds": self.text})
        self.step += 1
        return (result or {}).get("latents", latents)


@dataclass(frozen=True)
class _Plan:
    """A request resolved against this pipeline: sampler, size, pixels and prompt schedule."""

    request: GenerationRequest
    settings: SamplerSettings
    schedules: list[PromptSchedule]  # one per conditioning group of the batch
    height: int
    width: int
    image: torch.Tensor | None  # (1, 3, 1, H, W) in [−1, 1]
    video: torch.Tensor | None  # (1, 3, T, H, W) in [−1, 1]
    decode: Callable[[torch.Tensor], torch.Tensor]  # a chunk's latents → uint8 frames on the device


class HeliosPipeline:
    """Helios generation from a transformer, a text encoder and a video codec.

    Execution options (attributes, default off; outputs are the same either way):
    ``overlap_decode`` decodes each chunk on a second CUDA stream while the next one is denoised
    (generation.overlap); ``batched_cfg`` runs the conditional and unconditional forwards as one batch.
    """

    overlap_decode: bool = False
    batched_cfg: bool = False
    decode_device: torch.device | None = None  # place_decoder: the codec's own device (None: the transformer's)
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

        device = resolve_device(device)
        if path is None:
            return load_default_pipeline(cls, device=device, preset=preset)
        return load_pipeline_folder(cls, Path(path), dtype=dtype, device=device, preset=preset)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def components(self) -> dict[str, Any]:
        """The parts this pipeline is built from (``HeliosPipeline(**pipe.components, sampler=...)``)."""
        return {"transformer": self.transformer, "text_encoder": self.text_encoder, "codec": self.codec}

    def to(self, device: str | torch.device) -> HeliosPipeline:
        """Move the transformer, the codec and the text encoder (each that can move) to ``device``."""
        self.transformer.to(device)
        self._move_encoders(device)
        self.decode_device = None  # (everything on one device again)
        return self

    def _move_encoders(self, device: str | torch.device) -> None:
        for part in (self.codec, self.text_encoder):
            if hasattr(part, "to"):
                part.to(device)

    def place_decoder(self, device: str | torch.device) -> HeliosPipeline:
        """Pipelined inference on two devices: the codec (decoding, and encoding I2V/V2V inputs) and
        the text encoder move to ``device``; the transformer stays. Each chunk's latents cross over
        and are decoded there while the transformer denoises the next chunk (``overlap_decode`` on),
        so the rate is the transformer's alone."""
        device = torch.device(device)
        self._move_encoders(device)
        self.decode_device = device
        self.overlap_decode = True
        return self

    def save_pretrained(self, path: str | Path) -> Path:
        """Write a folder ``from_pretrained`` loads back (see ``saving.py`` for the two layouts)."""
        from .saving import save_pipeline

        return save_pipeline(self, path)

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

    def fuse_lora(
        self, lora_scale: float = 1.0, safe_fusing: bool = False, adapter_names: list[str] | None = None
    ) -> None:
        self.transformer.fuse_lora(lora_scale, safe_fusing, adapter_names)

    def unfuse_lora(self) -> None:
        self.transformer.unfuse_lora()

    def unload_lora_weights(self) -> None:
        self.transformer.unload_lora()

    # ------------------------------------------------------------------------------ public API

    def generate(self, prompt: str | None = None, **options: Any) -> Video:
        """Generate a whole video. Same options as :meth:`stream`; ``num_frames`` must be finite."""
        _require_finite(options)
        chunks = list(self.stream(prompt, **options))
        frames = np.concatenate([c.frames for c in chunks], axis=-4)  # the time axis, batch or not
        latents = torch.cat([c.latents for c in chunks], dim=2)
        for chunk in chunks:  # views into the video: the pixels are held once
            length = chunk.frames.shape[-4]
            chunk.frames = frames[..., chunk.first_frame : chunk.first_frame + length, :, :, :]
        return Video(frames=frames, fps=self.fps, latents=latents, chunks=chunks)

    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | None = None,
        *,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end_tensor_inputs: tuple[str, ...] | list[str] = ("latents",),
        num_inference_steps: int | None = None,
        pyramid_num_inference_steps_list: list[int] | None = None,
        **options: Any,
    ):
        """diffusers-style call: always a batch, ``output_type`` "np" (float (B, T, H, W, 3) in [0, 1]),
        "pt" (float tensor (B, T, 3, H, W)), "uint8" ((B, T, H, W, 3)) or "latent" ((B, C, T', h, w)).
        Other keywords are :class:`GenerationRequest` fields (``generator``, ``num_videos_per_prompt``,
        ``prompt_embeds``, ``callback_on_step_end``, ``num_frames``, ...)."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        unknown = set(callback_on_step_end_tensor_inputs) - {"latents", "prompt_embeds"}
        if unknown:
            raise ValueError(f"callback tensors: only latents and prompt_embeds are given, not {sorted(unknown)}")
        if num_inference_steps is not None or pyramid_num_inference_steps_list is not None:
            if "steps" in options:
                raise ValueError("give steps or diffusers' num_inference_steps / pyramid lists, not both")
            options["steps"] = pyramid_num_inference_steps_list or num_inference_steps
        if negative_prompt is not None:
            options["negative_prompt"] = negative_prompt
        if output_type == "latent":  # denoised only: nothing is decoded
            _require_finite(options)
            plan = self._plan(GenerationRequest(prompt=prompt, **options))
            result = torch.cat([chunk.latents for chunk in self._denoise(plan, _StreamState())], dim=2)
            return HeliosOutput(frames=result) if return_dict else (result,)
        video = self.generate(prompt, **options)
        frames = video.frames if video.frames.ndim == 5 else video.frames[None]
        if output_type == "uint8":
            result = frames
        elif output_type == "np":
            result = frames.astype(np.float32) / 255
        else:
            result = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255
        return HeliosOutput(frames=result) if return_dict else (result,)

    def stream(self, prompt: str | None = None, **options: Any) -> LiveStream:
        """Start generating; iterate the result for :class:`VideoChunk` s as they are decoded.
        ``options`` are the fields of :class:`GenerationRequest`."""
        return self.run(GenerationRequest(prompt=prompt, **options))

    def run(self, request: GenerationRequest) -> LiveStream:
        """Start generating ``request``; iterate the result for chunks as they are decoded."""
        plan = self._plan(request)
        state = _StreamState()
        return LiveStream(self._run(plan, state), plan.schedules, state)

    # ------------------------------------------------------------------------------ the loop

    def _plan(self, request: GenerationRequest) -> _Plan:
        """Validate and resolve everything before any work starts, so bad input fails here."""
        settings = self._sampler_settings(request)
        height = self.height if request.height is None else request.height
        width = self.width if request.width is None else request.width
        self._check_size(height, width, settings)
        schedules = self._schedules(request)
        image = self._load_pixels(request.image, height, width, still=True) if request.image is not None else None
        video = self._load_pixels(request.video, height, width, still=False) if request.video is not None else None
        decode = self._carried_decode(request.batch_size) if request.decoder_carry else self._decode_on_device
        return _Plan(request, settings, schedules, height, width, image, video, decode)

    def _schedules(self, request: GenerationRequest) -> list[PromptSchedule]:
        """One prompt schedule per conditioning group: the schedule / prompt, each prompt of a list, or
        each row of ``prompt_embeds`` (a fixed 'prompt' whose encoder returns that row)."""
        if request.prompt_embeds is not None:
            rows = request.prompt_embeds.detach()
            return [
                PromptSchedule([PromptChange(0, f"prompt_embeds[{i}]")], lambda _, row=row: row[None])
                for i, row in enumerate(rows)
            ]
        if isinstance(request.prompt, list):
            return [PromptSchedule([PromptChange(0, p)], self._encode_text) for p in request.prompt]
        return [PromptSchedule(request.prompt_changes(), self._encode_text)]

    def _run(self, plan: _Plan, state: _StreamState) -> Iterator[VideoChunk]:
        """Denoise chunk after chunk and decode each; with ``overlap_decode`` the denoising runs on a
        worker thread and each decode on a second CUDA stream (see overlap.py)."""
        started = time.perf_counter()
        num_frames = plan.request.num_frames
        total_frames = None if num_frames is None else self.output_frames(num_frames)
        denoised = self._denoise(plan, state)
        decode_device = self.decode_device or self.device
        decoder = ChunkDecoder(plan.decode, decode_device, side_stream=self.overlap_decode)

        def submit(chunk: _Denoised):
            return chunk, decoder.submit(chunk.latents)

        def stop():
            state.stopped = True

        pairs = run_ahead(denoised, submit, stop) if self.overlap_decode else map(submit, denoised)
        emitted = 0
        for chunk, pending in pairs:
            frames = pending.wait()
            if total_frames is not None:  # (the time axis: first of one video, second of a batch)
                frames = frames[..., : total_frames - emitted, :, :, :]
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
            emitted += frames.shape[-4]

    @torch.inference_mode()
    def _decode_on_device(self, latents: torch.Tensor, states: list | None = None) -> torch.Tensor:
        """uint8 (T, H, W, 3) for one video, (B, T, H, W, 3) for a batch (decoded one video at a time);
        with ``states`` (one per video) each decode continues that video's causal context."""

        def decode(i: int) -> torch.Tensor:  # (a codec that cannot carry is never handed a state)
            video = latents[i : i + 1]
            return to_uint8_frames(self.codec.decode(video) if states is None else self.codec.decode(video, states[i]))

        decoded = [decode(i) for i in range(latents.shape[0])]
        return decoded[0] if len(decoded) == 1 else torch.stack(decoded)

    def _carried_decode(self, videos: int):
        """``decoder_carry``: a decode that keeps each video's causal context from chunk to chunk (chunks
        are decoded in order, also on the side stream of ``overlap_decode``)."""
        new_state = getattr(self.codec, "new_decoder_state", None)
        if new_state is None:
            raise ValueError(f"decoder_carry needs the Wan VAE; {type(self.codec).__name__} decodes each chunk alone")
        states = [new_state() for _ in range(videos)]
        return lambda latents: self._decode_on_device(latents, states)

    @torch.inference_mode()
    def _denoise(self, plan: _Plan, state: _StreamState) -> Iterator[_Denoised]:
        """The autoregressive loop: one denoised chunk (float32 latents) per iteration."""
        request, settings, schedules = plan.request, plan.settings, plan.schedules
        batch, per_group = request.batch_size, request.num_videos_per_prompt
        device, dtype = self.device, self.transformer.dtype
        codec = self.codec
        num_chunks = None if request.num_frames is None else self.chunks_for(request.num_frames)
        latent_h, latent_w = plan.height // codec.spatial_factor, plan.width // codec.spatial_factor

        draw = NoiseDraws(request.generator or torch.Generator().manual_seed(request.seed), device)
        negative = self._negative(request, batch).to(device, dtype) if settings.uses_cfg else None
        window = HistoryWindow(
            request.history_settings(self.history), batch, codec.latent_channels, latent_h, latent_w, device
        )
        if plan.image is not None:
            condition_on_image(window, codec, plan.image, draw)
        if plan.video is not None:
            condition_on_video(window, codec, plan.video, draw)
        sampler = ChunkSampler(settings, self.transformer.config.patch_size, dtype, batched_cfg=self.batched_cfg)
        drift = request.drift(self.drift_settings)
        monitor = DriftMonitor(drift, seed=request.seed + 1) if drift is not None else None

        on_step = _StepCallback(self, request.callback_on_step_end) if request.callback_on_step_end else None
        k = 0
        while (num_chunks is None or k < num_chunks) and not state.stopped:
            with state.lock:
                state.started = k
            chunk_started = time.perf_counter()
            history = window.history_inputs(dtype)
            _, current, weight = schedules[0].weights_for_chunk(k)
            text = torch.cat([s.embedding_for_chunk(k) for s in schedules]).repeat_interleave(per_group, dim=0)
            text = text.to(device, dtype)

            def model(latents, timestep, embedding, history=history):
                if state.stopped:  # a stopped stream (or a client that left) ends within one step
                    raise _Cancelled
                if latents.shape[0] > batch:  # batched CFG: the batch's history serves both halves
                    history = history.expand(latents.shape[0])
                return self.transformer(latents, timestep, embedding, history=history)

            noise = draw.normal((batch, codec.latent_channels, self.history.chunk_latent_frames, latent_h, latent_w))
            try:
                if on_step is not None:
                    on_step.text = text
                latents = sampler.sample(model, noise, text, negative, draw, first_chunk=k == 0, on_step=on_step)
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

    def _negative(self, request: GenerationRequest, batch: int) -> torch.Tensor:
        """One row (the request checked its count) per video of the batch."""
        embeds = request.negative_prompt_embeds
        if embeds is None:
            embeds = self._encode_text([request.negative_prompt])
        return embeds.expand(batch, *embeds.shape[1:])

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
