"""The fused C GRU kernel: built here, same states and gradients as the torch recurrence, safe to load."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from engine.model import gru_kernel
from engine.model.encoder import GRUEncoder
from engine.model.gru import Packing, _GRULayer

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """load() built anew into an empty cache, and its process-wide cache restored after the test."""
    monkeypatch.setenv("SEGMENT_ENGINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(gru_kernel.SETTING, raising=False)
    gru_kernel.load.cache_clear()
    yield tmp_path / "cache"
    gru_kernel.load.cache_clear()


def _layer(kernel, x, weights, packing, grad):
    x = x.detach().requires_grad_()
    weights = [w.detach().requires_grad_() for w in weights]
    out = _GRULayer.apply(x, *weights, packing, kernel)
    return (out, *torch.autograd.grad(out, [x, *weights], grad))


@needs_compiler
@pytest.mark.parametrize("lengths", [[64, 17, 1, 40, 64, 33, 2, 5] * 8, [1], [3, 3, 3]])
def test_matches_the_torch_recurrence(fresh, lengths):
    kernel = gru_kernel.load()
    assert kernel is not None
    torch.manual_seed(0)
    lengths = torch.tensor(lengths)
    packing = Packing.build(lengths, int(lengths.max()))
    gru = nn.GRU(32, 48)
    weights = [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]
    x, grad = torch.randn(int(lengths.sum()), 32), torch.randn(int(lengths.sum()), 48)
    expected = _layer(None, x.double(), [w.double() for w in weights], packing, grad.double())
    got = _layer(kernel, x, weights, packing, grad)
    for name, a, b in zip(("states", "x", "w_ih", "w_hh", "b_ih", "b_hh"), expected, got, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=2e-5, msg=name)


@needs_compiler
def test_the_encoder_trains_through_it_on_the_cpu(fresh, monkeypatch):
    calls = []
    kernel = gru_kernel.load()
    monkeypatch.setattr(kernel, "backward", lambda *a, _b=kernel.backward: calls.append(1) or _b(*a))
    encoder = GRUEncoder(dim=16)
    x = torch.randn(4, 6, 16, requires_grad=True)
    encoder(x, torch.tensor([6, 2, 5, 1])).sum().backward()
    assert calls and x.grad[1, 2:].abs().sum() == 0 and x.grad[1, :2].abs().sum() > 0


@needs_compiler
def test_built_once_per_source_and_cpu_then_reused(fresh):
    assert gru_kernel.load() is not None
    (library,) = fresh.glob("gru_kernel-*.so")
    built_at = library.stat().st_mtime_ns
    gru_kernel.load.cache_clear()
    assert gru_kernel.load() is not None
    assert [p.name for p in fresh.iterdir()] == [library.name] and library.stat().st_mtime_ns == built_at


@needs_compiler
def test_loading_leaves_denormals_alone(fresh):
    gru_kernel.load()
    assert np.float32(1e-39) * np.float32(1) != 0  # a -ffast-math link would switch on flush-to-zero
    assert float(torch.tensor([1e-39]) * 1) != 0


def test_switched_off_or_unbuildable(fresh, monkeypatch, caplog):
    monkeypatch.setenv(gru_kernel.SETTING, "torch")
    assert gru_kernel.load() is None
    gru_kernel.load.cache_clear()
    monkeypatch.setenv(gru_kernel.SETTING, "auto")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING):
        assert gru_kernel.load() is None
    assert "the fused CPU GRU kernel is unavailable" in caplog.text
    gru_kernel.load.cache_clear()
    monkeypatch.setenv(gru_kernel.SETTING, "c")
    with pytest.raises(OSError):
        gru_kernel.load()
    gru_kernel.load.cache_clear()
    monkeypatch.setenv(gru_kernel.SETTING, "fast")
    with pytest.raises(ValueError, match="SEGMENT_ENGINE_GRU_KERNEL='fast': expected auto, c or torch"):
        gru_kernel.load()
