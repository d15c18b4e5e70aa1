"""The forecasting head's fit on frozen encoder states (engine.model.head) and its purchase process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data import EventLogSpec, load_store
from engine.forecast.process import Process, alive_days, daily_discount
from engine.model.datamodule import SequenceDataModule
from engine.model.encoder import GRUEncoder
from engine.model.head import encode_pairs, fit_head
from engine.model.module import CustomerEncoder


@pytest.fixture(scope="module")
def setup(tiny_log):
    store, _ = load_store(EventLogSpec(path=str(tiny_log)))
    dm = SequenceDataModule(store, batch_size=32, horizon_days=30, forecast_samples=4, predict_max_len=32)
    sizes = [len(store.vocabs[f]) for f in ("event_type", "item_id", "category", "channel")]
    torch.manual_seed(0)
    model = CustomerEncoder(sizes, encoder=GRUEncoder, dim=16, out_dim=8, forecast_weight=1.0,
                            spend_scale=dm.spend_scale, unit=dm.unit)
    return store, dm, model


def test_pairs_carry_context_and_windows_and_no_state_unless_the_head_reads_it(setup):
    store, dm, model = setup
    rows = np.arange(20)
    pairs = encode_pairs(model, store, rows, dm.train_collate, seed=0, chunk=7)
    assert pairs["state"].shape == (20 * 4, 0) and pairs["context"].shape[0] == 80  # head_state=false: no encoder pass
    assert (pairs["horizon"] >= 7 - 1e-3).all() and (pairs["count"] >= 0).all()


def test_fit_head_trains_the_head_only_and_lowers_its_loss(setup):
    store, dm, model = setup
    encoder_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("head", "log_"))}
    head_before = [p.clone() for p in model.head.parameters()]
    result = fit_head(model, store, dm.train_rows, dm.val_rows, dm.train_collate,
                      {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}, epochs=3, seed=0)
    assert result["pairs"] == 4 * len(dm.train_rows) and np.isfinite(result["val_forecast"])
    after = model.state_dict()
    for name, value in encoder_before.items():
        if not name.startswith(("context_", "mean_value", "calibration", "span_days")):
            assert torch.equal(value, after[name]), name
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())  # as it found them for the encoder's own training
    assert model.span == pytest.approx((store.time_range()[1] + 1 - store.time_range()[0]) / 86400)


def test_the_process_answers_any_horizon_in_closed_form():
    p = Process(p_alive=np.array([1.0, 0.5, 0.0]), rate=np.array([0.1, 0.2, 0.3]),
                spend_rate=np.array([2.0, 4.0, 6.0]), decay=0.01, span=0.0)
    short, long = p.answer(30), p.answer(365)
    days = (1 - np.exp(-0.01 * 30)) / 0.01
    assert short["expected_purchases"] == pytest.approx([0.1 * days, 0.5 * 0.2 * days, 0.0])
    assert short["expected_spend"] == pytest.approx(20 * short["expected_purchases"])
    assert (long["expected_purchases"] > short["expected_purchases"])[:2].all()
    assert long["expected_purchases"][0] < 0.1 * 365  # customers drop out on the way
    assert short["p_buy"][2] == 0 and short["p_churn"][2] == 1
    assert 0 < short["p_buy"][0] < 1 and short["p_buy"][1] < short["p_buy"][0]
    value = p.lifetime_value(0.1)
    assert value == pytest.approx(p.p_alive * p.spend_rate / (0.01 + np.log(1.1) / 365))
    # within the log's span the head's p_alive holds the drop-out: days count whole, the decay only after
    assert alive_days(30, 0.01, 60) == 30 and alive_days(90, 0.01, 60) == pytest.approx(60 + 100 * (1 - np.exp(-0.3)))
    assert alive_days(30, 0.0, 10) == 30 and daily_discount(0.0) == 0
    with pytest.raises(ValueError, match="horizon_days"):
        p.answer(0)
