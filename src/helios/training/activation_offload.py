"""Tensors saved for the backward wait in host memory (``TrainConfig.offload_activations``).

PyTorch's ``save_on_cpu`` copies every saved tensor to the host and back on the compute stream, so each
copy stalls the forward or the backward that issued it. Here:

* only tensors of at least ``min_bytes`` move (with gradient checkpointing: each block's input; the
  small ones — norms' statistics, scalars — stay where they are, their copies would cost more than they save);
* the device → host copy runs on a copy stream of its own, after an event of the compute stream, into
  pinned memory; the device tensor is kept for that stream until the copy lands, then freed;
* the backward visits the saved tensors roughly in reverse: unpacking tensor i also starts bringing the
  nearest earlier tensor not yet used back on the copy stream, so its transfer overlaps the backward of
  block i; the compute stream waits only on the event of the tensor it needs.

Without CUDA the same bookkeeping runs with plain copies (how the CPU tests exercise it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

MIN_OFFLOAD_BYTES = 1 << 20


@dataclass
class _Saved:
    host: torch.Tensor
    device: torch.device
    index: int
    stored: torch.cuda.Event | None  # the device → host copy has landed
    back: torch.Tensor | None = None  # on its device again, waiting to be unpacked
    arrived: torch.cuda.Event | None = None
    used: bool = False  # unpacked once already


class HostActivations:
    """The pack/unpack hooks of one forward (see the module doc)."""

    def __init__(self, min_bytes: int):
        self.min_bytes = min_bytes
        self.saved: list[_Saved] = []
        self.unpacked: list[int] = []  # indices in the order the backward asked for them (diagnostics)
        self.stream = torch.cuda.Stream() if torch.cuda.is_available() else None

    def _stream(self, device: torch.device):
        return torch.cuda.stream(self.stream) if device.type == "cuda" else contextlib.nullcontext()

    def pack(self, tensor: torch.Tensor) -> torch.Tensor | _Saved:
        if tensor.device.type == "cpu" and self.stream is not None:  # already on the host
            return tensor
        if tensor.numel() * tensor.element_size() < self.min_bytes:
            return tensor
        cuda = tensor.device.type == "cuda"
        # empty_like keeps a dense tensor's strides (a transposed weight stays transposed), so the backward
        # runs the same kernels on the copy as on the original
        host = torch.empty_like(tensor, device="cpu", pin_memory=cuda)
        produced = torch.cuda.current_stream(tensor.device).record_event() if cuda else None
        with self._stream(tensor.device):
            if cuda:
                self.stream.wait_event(produced)
                tensor.record_stream(self.stream)  # freed by the forward, reused only after this copy
            host.copy_(tensor, non_blocking=cuda)
            stored = self.stream.record_event() if cuda else None
        saved = _Saved(host, tensor.device, len(self.saved), stored)
        self.saved.append(saved)
        return saved

    def _bring_back(self, saved: _Saved) -> None:
        if saved.back is not None:
            return
        cuda = saved.device.type == "cuda"
        with self._stream(saved.device):
            if cuda:
                self.stream.wait_event(saved.stored)
            back = torch.empty_like(saved.host, device=saved.device)
            back.copy_(saved.host, non_blocking=cuda)
            saved.arrived = self.stream.record_event() if cuda else None
        saved.back = back

    def unpack(self, packed: torch.Tensor | _Saved) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        self.unpacked.append(packed.index)
        self._bring_back(packed)
        packed.used = True
        upcoming = next((s for s in reversed(self.saved[: packed.index]) if not s.used), None)
        if upcoming is not None:  # the backward's next tensor, on its way while this one is used
            self._bring_back(upcoming)
        tensor = packed.back
        if packed.arrived is not None:
            compute = torch.cuda.current_stream(packed.device)
            compute.wait_event(packed.arrived)
            tensor.record_stream(compute)  # made on the copy stream, used on this one
        packed.back = None  # the graph holds it from here; a second unpack (rare) copies it again
        return tensor


@contextlib.contextmanager
def saved_tensors_on_host(enabled: bool, min_bytes: int | None = None) -> Iterator[HostActivations | None]:
    """While active (and ``enabled``), tensors saved for the backward of at least ``min_bytes`` (default
    ``MIN_OFFLOAD_BYTES``) wait in host memory; yields the hooks' object (None when disabled)."""
    if not enabled:
        yield None
        return
    offload = HostActivations(MIN_OFFLOAD_BYTES if min_bytes is None else min_bytes)
    with torch.autograd.graph.saved_tensors_hooks(offload.pack, offload.unpack):
        yield offload
