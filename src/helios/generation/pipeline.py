"""``HeliosPipeline``: text/image/video → video of any length, chunk by chunk (paper §3.1–3.5, §6).

The autoregressive loop lives here, once. ``stream()`` yields each 33-frame chunk as soon as it is
decoded and accepts live prompt changes; ``generate()`` is ``stream()`` collected into one video.

Output length rule (as the released pipelines): ``chunks = ceil(num_frames / 33)``; each chunk
decodes to 33 frames; the whole video is cut to ``4·⌊(33·chunks − 1)/4⌋ + 1`` frames, i.e. the last
chunk loses (33·chunks − 1) mod 4 frames. 33 → 33, 100 → 129, 240 → 261.
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
from .chunk import ChunkSampler
from .drift import DriftMonitor, DriftSettings
from .history import HistoryWindow, NoiseDraws, condition_on_image, condition_on_video
from .overlap import ChunkDecoder, run_ahead
from .prompts import PromptChange, PromptSchedule

DEFAULT_FPS = 24  # Helios is trained on 24 fps video; the official export is hard-coded to 24


def output_frame_count(num_frames: int, chunk_frames: int = 33, temporal_factor: int = 4) -> int:
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

    def __init__(self, run: Iterator[VideoChunk], schedule: PromptSchedule, state: "_StreamState"):
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
        """End the stream after the chunk in progress."""
        self._state.stopped = True

    @property
    def schedule(self) -> PromptSchedule:
        return self._schedule


@dataclass
class _StreamState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: int = -1  # index of the chunk being generated (or last generated)
    stopped: bool = False


@dataclass
class _Denoised:
    index: int
    latents: torch.Tensor  # float32 (B, C, T', h, w)
    started: float  # perf_counter when its denoising began
    prompt: str
    prompt_weight: float
    drift: bool


class HeliosPipeline:
    """Helios generation from a transformer, a text encoder and a video codec.

    ``overlap_decode`` (attribute, default off): decode each chunk on a second CUDA stream while the
    next one is denoised (generation.overlap); outputs are the same, chunks arrive sooner.
    """

    overlap_decode: bool = False

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
    ) -> "HeliosPipeline":
        """Load a diffusers-layout Helios folder (``model_index.json``, ``transformer/``, ``vae/``,
        ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or the embedded default model when no
        path is given."""
        from .loading import load_default_pipeline, load_pipeline_folder

        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if path is None:
            return load_default_pipeline(cls, device=device, preset=preset)
        return load_pipeline_folder(cls, Path(path), dtype=dtype, device=device, preset=preset)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

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

    def stream(
        self,
        prompt: str | None = None,
        *,
        prompts: list[PromptChange] | None = None,
        negative_prompt: str = "",
        num_frames: int | None = 132,
        height: int | None = None,
        width: int | None = None,
        image: Any = None,
        video: Any = None,
        seed: int = 0,
        preset: str | SamplerSettings | None = None,
        steps: int | list[int] | tuple[int, ...] | None = None,
        guidance_scale: float | None = None,
        shift_convention: str | None = None,
        skip_first_chunk: bool = False,
        adaptive: bool | DriftSettings = False,
    ) -> LiveStream:
        """Start generating; iterate the result for :class:`VideoChunk` s as they are decoded.

        ``prompt`` or ``prompts`` (a schedule of :class:`PromptChange`); ``image`` (I2V) or ``video``
        (V2V) as a path, uint8 array or tensor; ``num_frames=None`` runs until ``stop()``.
        ``preset``/``steps``/``guidance_scale``/``shift_convention`` override the pipeline's sampler.
        """
        settings = self._sampler_settings(preset, steps, guidance_scale, shift_convention)
        height = self.height if height is None else height
        width = self.width if width is None else width
        self._check_size(height, width, settings)
        if image is not None and video is not None:
            raise ValueError("give either an image (I2V) or a video (V2V), not both")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        changes = self._prompt_changes(prompt, prompts)
        schedule = PromptSchedule(changes, self._encode_text)
        state = _StreamState()
        pixels_image = self._load_pixels(image, height, width, still=True) if image is not None else None
        pixels_video = self._load_pixels(video, height, width, still=False) if video is not None else None
        drift = DriftSettings() if adaptive is True else (adaptive or None)
        run = self._run(
            schedule, state, settings, negative_prompt, num_frames, height, width, pixels_image, pixels_video,
            seed, skip_first_chunk, drift,
        )
        return LiveStream(run, schedule, state)

    # ------------------------------------------------------------------------------ the loop

    def _run(
        self, schedule: PromptSchedule, state: _StreamState, settings: SamplerSettings, negative_prompt: str,
        num_frames: int | None, height: int, width: int, image: torch.Tensor | None, video: torch.Tensor | None,
        seed: int, skip_first_chunk: bool, drift: DriftSettings | None,
    ) -> Iterator[VideoChunk]:
        """Denoise chunk after chunk and decode each; with ``overlap_decode`` the denoising runs on a
        worker thread and each decode on a second CUDA stream (see overlap.py)."""
        started = time.perf_counter()
        codec = self.codec
        chunk_frames = (self.history.chunk_latent_frames - 1) * codec.temporal_factor + 1
        total_frames = None if num_frames is None else output_frame_count(num_frames, chunk_frames, codec.temporal_factor)
        denoised = self._denoise(schedule, state, settings, negative_prompt, num_frames, height, width, image, video,
                                 seed, skip_first_chunk, drift, chunk_frames)
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
                index=chunk.index, frames=frames, first_frame=emitted, latents=chunk.latents,
                generation_seconds=now - chunk.started, since_start_seconds=now - started,
                prompt=chunk.prompt, prompt_weight=chunk.prompt_weight, drift=chunk.drift,
            )
            emitted += len(frames)

    @torch.inference_mode()
    def _decode_on_device(self, latents: torch.Tensor) -> torch.Tensor:
        return to_uint8_frames(self.codec.decode(latents))

    @torch.inference_mode()
    def _denoise(
        self, schedule: PromptSchedule, state: _StreamState, settings: SamplerSettings, negative_prompt: str,
        num_frames: int | None, height: int, width: int, image: torch.Tensor | None, video: torch.Tensor | None,
        seed: int, skip_first_chunk: bool, drift: DriftSettings | None, chunk_frames: int,
    ) -> Iterator["_Denoised"]:
        """The autoregressive loop: one denoised chunk (float32 latents) per iteration."""
        device, dtype = self.device, self.transformer.dtype
        hs = self.history
        codec = self.codec
        num_chunks = None if num_frames is None else max(1, math.ceil(num_frames / chunk_frames))
        latent_h, latent_w = height // codec.spatial_factor, width // codec.spatial_factor

        draw = NoiseDraws(torch.Generator().manual_seed(seed), device)
        negative = self._encode_text([negative_prompt]).to(device, dtype) if settings.uses_cfg else None
        window = HistoryWindow(hs, 1, codec.latent_channels, latent_h, latent_w, device)
        if image is not None:
            condition_on_image(window, codec, image, draw)
        if video is not None:
            condition_on_video(window, codec, video, draw)
        sampler = ChunkSampler(settings, self.transformer.config.patch_size, dtype)
        monitor = DriftMonitor(drift, seed=seed + 1) if drift is not None else None

        k = 0
        while (num_chunks is None or k < num_chunks) and not state.stopped:
            with state.lock:
                state.started = k
            chunk_started = time.perf_counter()
            history_inputs = window.transformer_inputs(dtype)
            previous, current, weight = schedule.weights_for_chunk(k)
            text = schedule.embedding_for_chunk(k).to(device, dtype)

            def model(latents, timestep, embedding, _inputs=history_inputs):
                if latents.shape[0] > 1:  # batched CFG: the one history serves both halves
                    _inputs = {k: v.expand(latents.shape[0], *v.shape[1:]) if k.startswith("latents_") else v
                               for k, v in _inputs.items()}
                return self.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=embedding, **_inputs)

            noise = draw.normal((1, codec.latent_channels, hs.chunk_latent_frames, latent_h, latent_w))
            latents = sampler.sample(model, noise, text, negative, draw, first_chunk=k == 0)
            if hs.keep_first_frame and ((k == 0 and window.anchor is None) or (skip_first_chunk and k == 1)):
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

    def _sampler_settings(self, preset, steps, guidance_scale, shift_convention) -> SamplerSettings:
        settings = self.sampler if preset is None else (sampler_preset(preset) if isinstance(preset, str) else preset)
        changes: dict[str, Any] = {}
        if steps is not None:
            if settings.pyramid_steps is not None:
                per_stage = (steps,) * len(settings.pyramid_steps) if isinstance(steps, int) else tuple(steps)
                if len(per_stage) != len(settings.pyramid_steps):
                    raise ValueError(f"steps needs {len(settings.pyramid_steps)} values (one per pyramid stage), got {len(per_stage)}")
                changes["pyramid_steps"] = tuple(int(s) for s in per_stage)
            else:
                if not isinstance(steps, int):
                    raise ValueError(f"preset {settings.name!r} has one stage: steps must be one number")
                changes["steps"] = steps
        if guidance_scale is not None:
            changes["guidance_scale"] = float(guidance_scale)
        if shift_convention is not None:
            changes["shift_convention"] = shift_convention
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

    @staticmethod
    def _prompt_changes(prompt: str | None, prompts: list[PromptChange] | None) -> list[PromptChange]:
        if (prompt is None) == (prompts is None):
            raise ValueError("give exactly one of prompt or prompts")
        if prompt is not None:
            if not prompt.strip():
                raise ValueError("prompt is empty")
            return [PromptChange(0, prompt)]
        return list(prompts)

    def _load_pixels(self, source: Any, height: int, width: int, still: bool) -> torch.Tensor:
        """A path, uint8 array ((H, W, 3) image or (T, H, W, 3) video) or [−1, 1] tensor → (1, 3, T, H, W)."""
        if isinstance(source, torch.Tensor):
            tensor = source if source.ndim == 5 else source.unsqueeze(0)
            if still and tensor.ndim == 4:
                tensor = tensor.unsqueeze(2)
            if tensor.ndim != 5 or tensor.shape[1] != 3 or tuple(tensor.shape[-2:]) != (height, width):
                raise ValueError(f"a pixel tensor must be (1, 3, T, {height}, {width}) in [-1, 1]; got {tuple(source.shape)}")
            return tensor.float()
        if isinstance(source, (str, Path)):
            array = read_image(source) if still else read_video(source)[0]
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
