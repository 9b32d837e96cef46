"""Run under torchrun (2 gloo processes): a tiny transformer's context-parallel forward and backward
against the same model run whole in this process, then the speed benchmark on both processes (its
JSON to argv[1]), then the server's lockstep (the first rank drives, the second follows) against one
process. Writes one JSON line of measured differences."""

from __future__ import annotations

import dataclasses
import json
import sys

import torch
import torch.distributed as dist

from helios import HeliosTransformer
from helios.config import TINY
from helios.parallel import disable_context_parallel, enable_context_parallel
from tests.conftest import history_inputs


def run(model, hidden, text, kwargs):
    model.zero_grad(set_to_none=True)
    out = model(hidden, torch.tensor([700.0 - 50 * i for i in range(hidden.shape[0])]), text, **kwargs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    # (a rank whose tokens never reach a layer gets no gradient there: zero)
    return out.detach(), {
        n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
    }


def compare(config_change: dict, size: tuple[int, int], history: bool, batch: int = 1) -> dict:
    torch.manual_seed(0)  # the same weights and inputs on every rank
    model = HeliosTransformer.from_config(dataclasses.replace(TINY, num_attention_heads=4, **config_change))
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(batch, 16, 3, *size, generator=generator)
    text = torch.randn(batch, 7, TINY.text_dim, generator=generator)
    kwargs = {"indices_hidden_states": torch.arange(20, 23)[None]}
    if history:
        kwargs.update(history_inputs(batch, *size, long_frames=4, generator=generator))
    seen = []  # (samples, tokens) block 0's self-attention gets: all of them, then this rank's share
    model.blocks[0].attn1.register_forward_hook(lambda module, args, out: seen.append(list(args[0].shape[:2])))
    # block 0's input is laid out for its own shape, not as a view of the whole sequence (compiled blocks
    # guard on strides: a view's changed with the history and recompiled them on the GPUs)
    own_layout = []
    model.blocks[0].register_forward_pre_hook(
        lambda module, args: own_layout.append(args[0].stride() == torch.empty(args[0].shape).stride())
    )
    whole, whole_grads = run(model, hidden, text, kwargs)
    enable_context_parallel(model)
    own_layout.clear()  # (only the split run's shards are checked)
    split, split_grads = run(model, hidden, text, kwargs)
    disable_context_parallel(model)
    for grad in split_grads.values():  # each rank holds its tokens' share
        dist.all_reduce(grad)
    worst_grad = max(
        ((split_grads[n] - g).abs().max() / g.abs().max().clamp(min=1e-12)).item() for n, g in whole_grads.items()
    )
    return {
        "change": config_change,
        "size": size,
        "history": history,
        "batch": batch,
        "output": (split - whole).abs().max().item(),
        "grad": worst_grad,
        "same_on_ranks": _same_everywhere(split),
        "tokens": seen,
        "own_layout": all(own_layout),
    }


def compare_ring(size: tuple[int, int]) -> dict:
    """Ring attention (forward only) on 3 heads — which Ulysses cannot split over 2 ranks — against the
    whole model; a training forward is refused."""
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(dataclasses.replace(TINY, num_attention_heads=3)).eval()
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(1, 16, 3, *size, generator=generator)
    text = torch.randn(1, 7, TINY.text_dim, generator=generator)
    kwargs = {"indices_hidden_states": torch.arange(20, 23)[None], **history_inputs(1, *size, long_frames=4)}
    with torch.no_grad():
        whole = model(hidden, torch.tensor([600.0]), text, **kwargs)
        enable_context_parallel(model, method="ring")
        split = model(hidden, torch.tensor([600.0]), text, **kwargs)
    try:
        model(hidden, torch.tensor([600.0]), text, **kwargs)
        refused = ""
    except RuntimeError as exc:
        refused = str(exc)
    disable_context_parallel(model)
    return {"output": (split - whole).abs().max().item(), "same_on_ranks": _same_everywhere(split), "refused": refused}


def _same_everywhere(x: torch.Tensor) -> bool:
    others = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(others, x)
    return all(torch.equal(o, x) for o in others)


def main() -> None:
    dist.init_process_group("gloo")
    results = [
        compare({}, (8, 8), history=True),  # rank 0 holds history tokens only
        compare({"is_amplify_history": True, "guidance_cross_attn": False}, (8, 16), history=True),
        compare({}, (2, 6), history=False),  # 9 tokens: shards of 5 and 4
        compare({}, (8, 8), history=True, batch=2),  # CFG-parallel: one sample per rank, whole
    ]
    ring = compare_ring((2, 6))  # 9 noisy tokens after the history: uneven shards
    # `helios bench speed` on both processes (its table printed and its JSON written by the first)
    from helios.bench.speed import run_benchmark

    speed = run_benchmark("tiny", "helios-distilled", 33, "cpu", None, sys.argv[1], torch.float32, breakdown=False)
    lockstep = lockstep_session()
    if dist.get_rank() == 0:
        sys.stdout.write(
            json.dumps({"cases": results, "ring": ring, "speed_rows": len(speed), "lockstep": lockstep}) + "\n"
        )
    dist.destroy_process_group()


def lockstep_session() -> dict | None:
    """What the server does on the first rank — a live stream with a prompt change after chunk 0 and a
    stop after chunk 1, a second generation refused while it runs, then another stream to its end —
    with the second rank following; the frames against the same calls in one process."""
    from helios import GenerationRequest, HeliosPipeline
    from helios.serve.lockstep import Busy, LockstepPipeline, control_group, follow

    pipeline = HeliosPipeline.from_pretrained(device="cpu")
    pipeline.height, pipeline.width = 64, 128
    red = "a large red circle moves left slowly on a black background"
    blue = "a large blue square moves up quickly on a black background"
    requests = [
        GenerationRequest(red, num_frames=99, seed=3, steps=(1, 1, 1)),
        GenerationRequest(blue, num_frames=33, steps=(1, 1, 1)),
    ]

    def session(runner) -> tuple[list, list, list]:
        stream = runner.run(requests[0])
        first = [next(stream).frames]
        scheduled = [stream.update_prompt(blue, 1)]
        refused = []
        try:
            runner.run(requests[1])
        except Busy as exc:
            refused.append(str(exc))
        first.append(next(stream).frames)
        stream.stop()
        first += [c.frames for c in stream]  # (nothing: stopped at the boundary)
        second = [c.frames for c in runner.run(requests[1])]
        return first, second, scheduled + refused

    enable_context_parallel(pipeline.transformer)
    group = control_group()
    if dist.get_rank() != 0:
        follow(pipeline, group)
        return None
    lockstep = LockstepPipeline(pipeline, group)
    first, second, notes = session(lockstep)
    lockstep.close()
    disable_context_parallel(pipeline.transformer)
    alone = HeliosPipeline.from_pretrained(device="cpu")
    alone.height, alone.width = 64, 128
    stream = alone.run(requests[0])
    expected_first = [next(stream).frames]
    stream.update_prompt(blue, 1)
    expected_first.append(next(stream).frames)
    stream.stop()
    expected_second = [c.frames for c in alone.run(requests[1])]
    difference = max(
        int(abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(first + second, expected_first + expected_second)
    )
    return {"chunks": [len(first), len(second)], "max_difference": difference, "notes": notes}


if __name__ == "__main__":
    main()
