"""Block-level weight offload: run a stack of blocks from host memory through a few device slots.

The weights of every block live in pinned host memory. The device holds ``slots`` block-sized
buffers; block i runs from slot ``i % slots``. While block i computes, block i+1 is copied into the
next slot on a separate copy stream, so transfer and compute overlap; an event per slot stops a copy
from overwriting a block that is still running. After the last block the first one is fetched again,
ready for the next call. Device memory for weights: ``slots`` blocks instead of all of them.

Works for any ``nn.ModuleList`` of identically shaped blocks: the transformer's 40 blocks, and the
UMT5 encoder's 24 layers (``offload_model_blocks(umt5, "encoder.block", ...)``). Parameters outside the
blocks stay where the caller put them. Inference only.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class BlockOffload:
    def __init__(self, blocks: nn.ModuleList, device: torch.device | str, slots: int = 2):
        if len(blocks) < 2 or slots < 2:
            raise ValueError("block offload needs at least 2 blocks and 2 slots")
        self.blocks = blocks
        self.device = torch.device(device)
        self.params = [list(block.parameters()) for block in blocks]
        shapes = [[(p.shape, p.dtype) for p in params] for params in self.params]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("block offload needs blocks of identical parameter shapes")
        pin = self.device.type == "cuda"
        with torch.no_grad():
            self.host = [
                [p.detach().to("cpu").pin_memory() if pin else p.detach().to("cpu").clone() for p in params]
                for params in self.params
            ]
            for params, host in zip(self.params, self.host):
                for p, h in zip(params, host):
                    p.data = h  # the device copy of each block is dropped here
        self.slots = [
            [torch.empty(shape, dtype=dtype, device=self.device) for shape, dtype in shapes[0]] for _ in range(slots)
        ]
        cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self.loaded = [torch.cuda.Event() for _ in range(slots)] if cuda else None  # copy into slot done
        self.released = [None] * slots  # compute done with the slot's previous block
        self.resident: list[int | None] = [None] * slots
        self.hooks = [block.register_forward_pre_hook(self._before(i)) for i, block in enumerate(blocks)]
        self.hooks += [block.register_forward_hook(self._after(i)) for i, block in enumerate(blocks)]
        self._fetch(0)

    @property
    def device_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for slot in self.slots for t in slot)

    @property
    def host_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for host in self.host for t in host)

    def _fetch(self, index: int) -> None:
        """Queue the copy of block ``index`` into its slot (after that slot's last user finished)."""
        slot = index % len(self.slots)
        if self.resident[slot] == index:
            return
        targets = self.slots[slot]
        if self.copy_stream is None:
            for target, source in zip(targets, self.host[index]):
                target.copy_(source)
        else:
            with torch.cuda.stream(self.copy_stream):
                if self.released[slot] is not None:
                    self.copy_stream.wait_event(self.released[slot])
                for target, source in zip(targets, self.host[index]):
                    target.copy_(source, non_blocking=True)
                self.loaded[slot].record(self.copy_stream)
        self.resident[slot] = index

    def _before(self, index: int):
        def hook(module, args):
            self._fetch(index)  # no-op when prefetched
            slot = index % len(self.slots)
            if self.loaded is not None:
                torch.cuda.current_stream(self.device).wait_event(self.loaded[slot])
            for p, target in zip(self.params[index], self.slots[slot]):
                p.data = target
            following = (index + 1) % len(self.blocks)
            if following % len(self.slots) != slot:  # (wrapping round, block 0 may share this block's slot)
                self._fetch(following)  # overlaps with this block's compute

        return hook

    def _after(self, index: int):
        def hook(module, args, output):
            slot = index % len(self.slots)
            if self.copy_stream is not None:
                self.released[slot] = torch.cuda.current_stream(self.device).record_event()
            for p, host in zip(self.params[index], self.host[index]):
                p.data = host  # the slot may now be refilled; the block points back at its host copy

        return hook

    def remove(self) -> None:
        """Undo: every block back on the device, hooks removed."""
        for hook in self.hooks:
            hook.remove()
        with torch.no_grad():
            for params, host in zip(self.params, self.host):
                for p, h in zip(params, host):
                    p.data = h.to(self.device)


def offload_model_blocks(model: nn.Module, blocks: str, device: torch.device | str, slots: int = 2) -> BlockOffload:
    """Put everything of ``model`` on ``device`` except the ``ModuleList`` at attribute path ``blocks``
    (e.g. ``"blocks"``, ``"encoder.block"``), whose weights are streamed by a :class:`BlockOffload`."""
    stack = model.get_submodule(blocks)
    inside = {id(t) for t in (*stack.parameters(), *stack.buffers())}
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if id(tensor) not in inside:
                tensor.data = tensor.data.to(device)
    return BlockOffload(stack, device, slots)
