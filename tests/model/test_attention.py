"""Each exact attention backend equals the float64 reference on random inputs (where it runs); the FP8
one has its own tests (test_fp8_attention.py)."""

from __future__ import annotations

import math

import pytest
import torch

from helios.model import attention as attn


def reference_attention(q, k, v):
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return (weights @ v).transpose(1, 2)


def _device_and_dtype():
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16, 2e-2
    return "cpu", torch.float32, 1e-5


@pytest.mark.parametrize("backend", [b for b in attn.BACKENDS if b not in attn.APPROXIMATE_BACKENDS])
def test_backend_matches_reference(backend):
    device, dtype, tolerance = _device_and_dtype()
    if not attn.is_available(backend, device, dtype):
        pytest.skip(f"attention backend {backend!r} does not run on {device} here")
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 77, 4, 64, generator=generator).to(device, dtype) for _ in range(3))
    k = k[:, :50]
    v = v[:, :50]
    out = attn.attention(q, k, v, backend)
    expected = reference_attention(q, k, v)
    assert out.shape == (2, 77, 4, 64) and out.dtype == dtype
    error = ((out.double() - expected).norm() / expected.norm()).item()
    assert error < tolerance


def test_an_empty_query_gives_an_empty_output_and_zero_key_value_gradients():
    """A context-parallel rank may hold no noisy token: its cross-attention has no query, yet its key and
    value projections must get gradients (zeros) like every other rank's, or FSDP's reductions differ."""
    device, dtype, _ = _device_and_dtype()
    q = torch.randn(2, 0, 4, 64, device=device, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(2, 5, 4, 64, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
    out = attn.attention(q, k, v, "cudnn" if device == "cuda" else "sdpa")
    assert out.shape == (2, 0, 4, 64)
    out.float().sum().backward()
    assert k.grad is not None and v.grad is not None
    assert not k.grad.any() and not v.grad.any()


def test_sdpa_always_available_on_cpu():
    assert attn.is_available("sdpa", "cpu", torch.float32)
    assert attn.is_available("math", "cpu", torch.float32)


def _tiny_model():
    from helios import HeliosTransformer
    from helios.config import TINY

    return HeliosTransformer.from_config(TINY)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown attention backend 'fast'; choose one of sdpa"):
        attn.set_attention_backend(_tiny_model(), "fast")


def test_missing_package_is_a_clear_error():
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="needs the 'flash_attn' package"):
            attn.set_attention_backend(_tiny_model(), "flash_attn")
    else:
        pytest.skip("flash_attn is installed here")


def test_context_manager_restores_previous_backend():
    model = _tiny_model()
    before = attn.get_attention_backend(model)
    assert before == "sdpa"
    with attn.attention_backend(model, "math"):
        assert attn.get_attention_backend(model) == "math"
        assert all(block.attn1.backend == block.attn2.backend == "math" for block in model.blocks)
    assert attn.get_attention_backend(model) == before


def test_backend_is_a_setting_of_each_model_not_of_the_process():
    first, second = _tiny_model(), _tiny_model()
    attn.set_attention_backend(first, "math")
    assert attn.get_attention_backend(first) == "math" and attn.get_attention_backend(second) == "sdpa"
    hidden, text = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, 32)
    second.load_state_dict(first.state_dict())
    with torch.no_grad():
        assert torch.allclose(
            first(hidden, torch.tensor([500]), text), second(hidden, torch.tensor([500]), text), atol=1e-5
        )
