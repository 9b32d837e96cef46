"""The overlapped activation offload (training/activation_offload.py) on the CPU: the same loss and
gradients as without it, every large saved tensor moved and brought back once, small ones left alone.
tests/gpu checks the streams and the memory it saves on a card."""

from __future__ import annotations

import pytest
import torch

from helios import HeliosTransformer
from helios.config import TINY
from helios.training.activation_offload import saved_tensors_on_host


def _step(model, offload: bool, min_bytes: int):
    torch.manual_seed(1)
    hidden, text = torch.randn(1, 16, 3, 8, 8), torch.randn(1, 5, 32)
    model.zero_grad(set_to_none=True)
    with saved_tensors_on_host(offload, min_bytes) as hooks:
        loss = model(hidden, torch.tensor([500]), text).square().mean()
    loss.backward()
    saved, unpacked = ([], []) if hooks is None else (hooks.saved, hooks.unpacked)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, saved, unpacked


@pytest.mark.skipif(torch.cuda.is_available(), reason="where CUDA runs, CPU tensors are left alone: tests/gpu")
def test_offloaded_activations_give_the_same_gradients():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).train()
    model.enable_gradient_checkpointing(True)
    loss, grads, _, _ = _step(model, False, 0)
    loss_off, grads_off, saved, unpacked = _step(model, True, 0)
    assert loss_off == loss and grads_off.keys() == grads.keys()
    assert all(torch.equal(grads[n], grads_off[n]) for n in grads)
    # every moved tensor went to the host and came back: each index asked for, the last first
    assert saved and all(s.host.device.type == "cpu" for s in saved)
    assert sorted(set(unpacked)) == list(range(len(saved))) and unpacked[0] == len(saved) - 1
    assert all(s.back is None for s in saved)  # nothing prefetched left behind


def test_small_tensors_stay_where_they_are():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).train()
    model.enable_gradient_checkpointing(True)
    *_, saved, unpacked = _step(model, True, 1 << 20)  # the tiny model's tensors are all below 1 MiB
    assert saved == [] and unpacked == []
