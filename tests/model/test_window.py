"""The one history-input type: from the window to the patch embeddings, keyword-compatible with diffusers."""

from __future__ import annotations

import pytest
import torch

from helios import HeliosTransformer
from helios.config import TINY, HistorySettings
from helios.model.window import HistoryInputs, window_frames, window_history, window_indices, window_split


def test_window_indices_follow_the_paper_layout():
    indices = window_indices(HistorySettings())
    assert indices.indices_short.tolist() == [[0, 19]]
    assert indices.indices_long.tolist() == [list(range(1, 17))]
    assert indices.indices_mid.tolist() == [[17, 18]]
    assert indices.indices_current.tolist() == [list(range(20, 29))]
    assert window_frames(HistorySettings()) == 19
    assert window_split(HistorySettings(keep_first_frame=False)) == (16, 2, 2)


def test_window_history_slices_the_newest_frames_and_puts_the_anchor_first():
    settings = HistorySettings()
    buffer = torch.arange(25, dtype=torch.float32).view(1, 1, 25, 1, 1).expand(1, 16, 25, 2, 2)
    anchor = torch.full((1, 16, 1, 2, 2), -1.0)
    history = window_history(buffer, anchor, settings, torch.float32)
    assert history.long[0, 0, :, 0, 0].tolist() == list(range(6, 22))
    assert history.mid[0, 0, :, 0, 0].tolist() == [22, 23]
    assert history.short[0, 0, :, 0, 0].tolist() == [-1, 24]
    without = window_history(buffer, None, settings, torch.float32)
    assert without.short[0, 0, :, 0, 0].tolist() == [0, 24]  # no anchor yet: zeros


def test_diffusers_keywords_round_trip():
    history = window_history(torch.randn(1, 16, 19, 4, 4), None, HistorySettings(), torch.float32)
    keywords = history.diffusers_kwargs()
    assert set(keywords) == {
        "indices_hidden_states",
        "indices_latents_history_short",
        "indices_latents_history_mid",
        "indices_latents_history_long",
        "latents_history_short",
        "latents_history_mid",
        "latents_history_long",
    }
    again = HistoryInputs.from_diffusers(**keywords)
    assert all(a is b for a, b in zip(again.named_tensors().values(), history.named_tensors().values()))


def test_forward_takes_the_history_object_or_diffusers_keywords_with_equal_results():
    torch.manual_seed(0)
    model = HeliosTransformer.from_config(TINY).eval()
    history = window_history(
        torch.randn(2, 16, 19, 4, 4), torch.randn(2, 16, 1, 4, 4), HistorySettings(), torch.float32
    )
    hidden, text = torch.randn(2, 16, 9, 4, 4), torch.randn(2, 5, 32)
    with torch.no_grad():
        by_object = model(hidden, torch.tensor([900, 300]), text, history=history)
        by_keywords = model(hidden, torch.tensor([900, 300]), text, **history.diffusers_kwargs())
    assert torch.equal(by_object, by_keywords)
    with pytest.raises(ValueError, match="not both"):
        model(hidden, torch.tensor([900, 300]), text, history=history, latents_history_short=history.short)


def test_expand_shares_one_history_across_a_batch():
    history = window_history(torch.randn(1, 16, 19, 4, 4), None, HistorySettings(), torch.float32)
    grown = history.expand(3)
    assert grown.short.shape[0] == grown.mid.shape[0] == grown.long.shape[0] == 3
    assert torch.equal(grown.long[2], history.long[0]) and grown.indices_short is history.indices_short


def test_to_moves_latents_and_leaves_cpu_indices_alone():
    history = window_history(torch.randn(1, 16, 19, 4, 4), None, HistorySettings(), torch.float32)
    moved = history.to(torch.device("cpu"), torch.float64)
    assert moved.short.dtype == torch.float64 and moved.indices_short.dtype == torch.int64
