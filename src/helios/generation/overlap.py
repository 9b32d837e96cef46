"""Decoding chunk k while chunk k+1 is denoised (the speed issue's VAE overlap).

The denoising loop runs on a producer thread. Each finished chunk is decoded on a second CUDA stream
that waits only for that chunk's latents, its uint8 frames are copied into pinned host memory without
blocking, and an event marks when they have arrived. The consumer (the caller iterating the stream)
waits on that event alone, so chunk k reaches the caller as soon as its own decode is done, while the
GPU is already denoising chunk k+1. Without CUDA the same structure runs with plain threads.

The producer runs at most ``ahead`` chunks in front of the consumer, so a live prompt change still
lands within a chunk or two and a stopped stream wastes little work.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_DONE = object()


@dataclass
class DecodedFrames:
    """Frames on their way to the host; ``wait()`` returns them once the copy has landed."""

    host: torch.Tensor  # uint8 (T, H, W, 3), pinned when on CUDA
    ready: torch.cuda.Event | None

    def wait(self) -> np.ndarray:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.numpy()


class ChunkDecoder:
    """Runs ``decode(latents) → uint8 (T, H, W, 3) device tensor`` and brings the frames to the host:
    in line (``side_stream=False`` or no CUDA), or launched on a stream of its own."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], device: torch.device, side_stream: bool):
        self.decode = decode
        self.device = device
        self.stream = torch.cuda.Stream(device) if side_stream and device.type == "cuda" else None

    def submit(self, latents: torch.Tensor) -> DecodedFrames:
        if self.stream is None:
            return DecodedFrames(self.decode(latents).cpu(), None)
        if latents.device != self.device:  # pipelined over two GPUs: a small copy to the decoding one
            latents = latents.to(self.device)
        produced = torch.cuda.current_stream(latents.device).record_event()
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(produced)
            latents.record_stream(self.stream)  # the denoiser may free it while this stream still reads it
            frames = self.decode(latents)
            host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            ready = self.stream.record_event()
        return DecodedFrames(host, ready)


def run_ahead(
    produce: Iterator[Any], submit: Callable[[Any], Any], stop: Callable[[], None], ahead: int = 1
) -> Iterator[Any]:
    """Iterate ``produce`` on a worker thread, passing each item through ``submit`` there; yield the
    submitted results in order. Closing the returned iterator calls ``stop`` and joins the worker;
    an exception in the worker is raised here."""
    results: queue.Queue = queue.Queue(maxsize=ahead)
    closing = threading.Event()

    def put(item) -> bool:
        while not closing.is_set():
            try:
                results.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in produce:
                if not put(submit(item)):
                    break
        except BaseException as error:  # handed to the consumer, raised there
            put(error)
        finally:
            put(_DONE)

    worker = threading.Thread(target=work, name="helios-denoise", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop()
        closing.set()
        worker.join()
        close = getattr(produce, "close", None)
        if close is not None:
            close()
