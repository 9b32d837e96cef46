"""CUDA graphs for the transformer's inference forward, one per input signature.

A Helios run calls the transformer with a handful of shapes only (one per pyramid stage, twice that
with batched CFG), and the relative-RoPE indices are the same every chunk. So each signature is
captured once and then replayed: the thousands of kernel launches of a 40-block forward become one.

Signature = every tensor's shape, dtype and device, plus the *values* of the CPU index tensors (they
choose the RoPE tables, which are baked into the capture). Floating inputs are copied into static
device buffers before each replay; the output is cloned out of the graph's memory, because the next
replay (e.g. the unconditional half of CFG) overwrites it. All graphs share one memory pool: they
never run at the same time, and nothing of one is read after another has run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .window import HistoryInputs

# predict(hidden_states, timestep, text, history) → velocity
Predict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, HistoryInputs], torch.Tensor]


def _named_inputs(x: torch.Tensor, timestep, text: torch.Tensor, history: HistoryInputs) -> dict:
    return {"hidden_states": x, "timestep": timestep, "text": text, **history.named_tensors()}


def _signature(inputs: dict) -> tuple:
    parts = []
    for name, value in inputs.items():
        if value is None:
            parts.append((name, None))
        elif isinstance(value, torch.Tensor):
            values = (
                tuple(value.flatten().tolist())
                if value.device.type == "cpu" and not value.is_floating_point()
                else None
            )
            parts.append((name, tuple(value.shape), value.dtype, value.device.type, values))
        else:
            parts.append((name, value))
    return tuple(parts)


def _call(predict: Predict, inputs: dict) -> torch.Tensor:
    history = HistoryInputs(**{k: v for k, v in inputs.items() if k not in ("hidden_states", "timestep", "text")})
    return predict(inputs["hidden_states"], inputs["timestep"], inputs["text"], history)


class _Graph:
    def __init__(self, predict: Predict, inputs: dict, pool, warmup: int):
        device = inputs["hidden_states"].device
        # Floating tensors and the timestep live in static device buffers; CPU index tensors are
        # constants of this signature and are passed as they are.
        self.static = {
            name: value.to(device).clone() if isinstance(value, torch.Tensor) and _is_data(name, value) else value
            for name, value in inputs.items()
        }
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: allocator, cuBLAS/cuDNN plans, compilation
            for _ in range(warmup):
                _call(predict, self.static)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.output = _call(predict, self.static)

    def replay(self, inputs: dict) -> torch.Tensor:
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor) and _is_data(name, value):
                self.static[name].copy_(value, non_blocking=True)
        self.graph.replay()
        return self.output.clone()


def _is_data(name: str, value: torch.Tensor) -> bool:
    """Inputs whose values change between calls of one signature (copied in before each replay)."""
    return name == "timestep" or value.is_floating_point() or value.device.type != "cpu"


class CudaGraphs:
    """Callable like the model's ``predict``; captures on the first call of each signature.
    Gradient-enabled and non-CUDA calls run the eager ``predict``."""

    def __init__(self, predict: Predict, warmup: int = 2, max_graphs: int = 16):
        self.predict = predict
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, _Graph] = {}
        self.pool = None

    def __call__(self, x: torch.Tensor, timestep, text: torch.Tensor, history: HistoryInputs) -> torch.Tensor:
        if not x.is_cuda or torch.is_grad_enabled():
            return self.predict(x, timestep, text, history)
        inputs = _named_inputs(x, _as_device_tensor(timestep, x), text, history)
        key = _signature(inputs)
        graph = self.graphs.get(key)
        if graph is None:
            if len(self.graphs) >= self.max_graphs:  # shapes keep changing: graphs do not pay off
                return _call(self.predict, inputs)
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph = self.graphs[key] = _Graph(self.predict, inputs, self.pool, self.warmup)
        return graph.replay(inputs)


def _as_device_tensor(timestep, like: torch.Tensor) -> torch.Tensor:
    """The timestep as a (batch,) device tensor, so that its copy into the graph is a device op."""
    timestep = torch.as_tensor(timestep, device=like.device)
    return timestep.reshape(1).expand(like.shape[0]).contiguous() if timestep.numel() == 1 else timestep


def enable_cuda_graphs(model: nn.Module, enabled: bool = True) -> CudaGraphs | None:
    """Replay each inference call of ``model.predict`` as a CUDA graph captured once per input shape
    (three per pyramid run): one launch instead of thousands. Works with the compiled, fused and FP8
    paths; enable it after switching those on (or again after changing them: it captures anew)."""
    model.__dict__.pop("predict", None)  # back to the class's eager predict
    if not enabled:
        return None
    runner = CudaGraphs(model.predict)
    model.predict = runner  # an instance attribute: forward() calls self.predict
    return runner


def cuda_graphs_of(model: nn.Module) -> CudaGraphs | None:
    """The model's CUDA-graph runner, or None when graphs are off."""
    runner = model.__dict__.get("predict")
    return runner if isinstance(runner, CudaGraphs) else None
