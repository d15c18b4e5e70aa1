import pytest
import torch

from engine.model.dropout import Dropout, dropout


def test_drops_the_asked_fraction_and_scales_the_rest():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, 0.1)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1M draws: sd of the fraction is 0.0003
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    # no pattern across rows or columns: each row and column keeps close to 90%
    assert kept.float().mean(0).min() > 0.85 and kept.float().mean(1).min() > 0.85


def test_mask_follows_torch_seed_and_changes_between_calls():
    x = torch.randn(64, 128)
    torch.manual_seed(7)
    a, b = dropout(x, 0.3), dropout(x, 0.3)
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.3), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask():
    x = torch.randn(32, 16, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.5)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).double() * 2)


def test_identity_outside_training_and_at_zero():
    x = torch.randn(8, 8)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    module = Dropout(0.5).eval()
    assert torch.equal(module(x), x)
    assert module.train()(x).eq(0).any()


def test_keeps_dtype_and_rejects_a_bad_probability():
    assert dropout(torch.randn(4, 4, dtype=torch.bfloat16), 0.2).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        dropout(torch.randn(4), 1.0)
