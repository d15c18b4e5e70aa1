"""Model inputs from a store: padded gathers, CoLES slices, forecast context, and the objectives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from engine.data.store import build_store
from engine.model.datamodule import TrainCollate, forecast_context, split_rows
from engine.model.features import DAY, StoreIndex, gather, random_slices
from engine.model.losses import coles_loss, item_loss

T0 = 1_700_000_000


@pytest.fixture
def store():
    events = pa.table({
        "customer_id": ["a", "a", "a", "a", "b", "b"],
        "ts": [T0, T0 + DAY, T0 + 2 * DAY, T0 + 40 * DAY, T0, T0 + 3 * DAY],
        "event_type": ["view", "purchase", "view", "purchase", "purchase", "view"],
        "item_id": ["i1", "i1", "i2", "i2", "i3", "i3"],
        "category": ["c"] * 6, "channel": ["web"] * 6,
        "amount": [5.0, 10.0, 7.0, 20.0, 3.0, None], "quantity": [1.0] * 6,
    })
    events = events.set_column(1, "ts", pa.array(np.array(events["ts"].to_pylist(), dtype=np.int64)))
    return build_store(events, ["purchase"], ["return"])[0]


def test_gather_pads_to_the_longest_range_and_masks(store):
    batch = gather(store, np.array([0, 4]), np.array([4, 2]))
    assert batch["cat"].shape == (2, 4, 4) and batch["num"].shape[:2] == (2, 4)
    assert batch["lengths"].tolist() == [4, 2]
    assert (batch["cat"][1, 2:] == 0).all() and (batch["num"][1, 2:] == 0).all()
    # hours since the previous event: log1p(24) for a's second event
    assert batch["num"][0, 1, 4].item() == pytest.approx(np.log1p(24.0), rel=1e-5)


def test_random_slices_stay_inside_each_customer(store):
    rng = np.random.default_rng(0)
    starts, lengths, labels = random_slices(store, np.array([0, 1]), 8, 2, 3, rng)
    ends = starts + lengths
    own_start, own_end = store.offsets[labels], store.offsets[labels + 1]
    assert (starts >= own_start).all() and (ends <= own_end).all() and (lengths >= 2).all()


def test_forecast_context_counts_transactions_spend_and_recency(store):
    index = StoreIndex.build(store, "basket")
    as_of = T0 + 50 * DAY
    context = forecast_context(index, store, np.array([0]), store.offsets[1:2], np.array([as_of])).numpy()[0]
    assert context[0] == pytest.approx(np.log1p(10.0))  # last event 10 days ago
    assert context[2] == pytest.approx(np.log1p(50.0))  # tenure: first event 50 days ago
    assert context[3] == pytest.approx(np.log1p(2.0))  # two transactions
    assert context[5] == pytest.approx(np.log1p(1.0))  # one in the last 28 days
    assert context[9] == pytest.approx(2.0 / 50.0)  # transactions per day of tenure
    assert context[10] == pytest.approx(np.log1p(30.0))  # spend 10 + 20
    assert context[13] == pytest.approx(np.log1p(15.0))  # per transaction
    assert context[14] == pytest.approx(np.log1p(10.0)) and context[15] == 1.0  # last purchase 10 days ago
    assert context[16] == pytest.approx(np.log1p(39.0))  # days 1 and 40: one gap of 39 days
    # history cut before the second purchase: as of day 3, one transaction, 2 days ago
    cut = index.first_at_or_after(np.array([0]), np.array([T0 + 3 * DAY]))
    early = forecast_context(index, store, np.array([0]), cut, np.array([T0 + 3 * DAY])).numpy()[0]
    assert early[3] == pytest.approx(np.log1p(1.0)) and early[14] == pytest.approx(np.log1p(2.0))


def test_lines_of_one_basket_are_one_transaction():
    events = pa.table({
        "customer_id": ["a"] * 4, "ts": np.array([T0, T0, T0 + 60, T0 + DAY], dtype=np.int64),
        "event_type": ["purchase"] * 4, "item_id": ["i1", "i2", "i3", "i1"], "category": ["c"] * 4,
        "channel": ["store"] * 4, "amount": [1.0, 2.0, 3.0, 4.0], "quantity": [1.0] * 4,
    })
    one = build_store(events, ["purchase"], ["return"])[0]
    assert StoreIndex.build(one, "basket").cum_purchases[-1] == 3  # two lines at T0 are one basket
    assert StoreIndex.build(one, "day").cum_purchases[-1] == 2  # two purchase days


def test_forecast_pairs_read_the_history_before_each_cutoff_and_count_its_window(store):
    """Each pair is the last events before its own cutoff T (the step: its last event), with the
    transactions in [T, T + h) for a window h from a week to the data's end."""
    collate = TrainCollate(store, n_slices=2, min_len=1, max_len=2, horizon_days=5.0, forecast_max_len=8,
                           spend_scale=1.0, forecast_samples=16, unit="basket")
    pairs = collate.forecast_pairs(store.take(np.array([0, 1])), np.random.default_rng(0))
    ts = np.asarray(store.columns["ts"])
    end = ts.max() + 1
    assert pairs["pair_row"].tolist() == list(range(32))
    assert (pairs["pair_step"] == pairs["lengths"] - 1).all()
    horizon = pairs["horizon"].numpy() * DAY
    for j in range(16):  # customer a: events on days 0, 1, 2, 40 (purchases on days 1 and 40)
        if pairs["weight"][j] == 0:
            continue
        n = int(pairs["lengths"][j])
        as_of = ts[n - 1] + np.expm1(pairs["context"][j, 0].item()) * DAY  # T from "days since last event"
        assert ts[n - 1] < as_of + 1 and (n == 4 or as_of <= ts[n] + 1)
        assert 7 * DAY - 1 <= horizon[j] <= end - as_of + 1
        bought = [i for i in (1, 3) if as_of <= ts[i] < as_of + horizon[j]]
        assert pairs["count"][j].item() == pytest.approx(len(bought), abs=1e-6)
    # customer b: a purchase on day 0 and a view on day 3; nothing bought after any cutoff
    assert (pairs["count"][16:] == 0).all() and (pairs["weight"][16:] == 1).all()


def test_split_is_a_stable_seeded_hash():
    ids = pa.array([f"c{i}" for i in range(2000)])
    train, val = split_rows(ids, 0.1, seed=0)
    again, _ = split_rows(ids, 0.1, seed=0)
    assert np.array_equal(train, again) and 120 < len(val) < 280
    assert not np.array_equal(split_rows(ids, 0.1, seed=1)[1], val)


def test_coles_loss_prefers_views_of_the_same_customer():
    labels = torch.tensor([0, 0, 1, 1])
    aligned = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1)
    mixed = aligned[[0, 2, 1, 3]]
    assert coles_loss(aligned, labels, 0.1) < coles_loss(mixed, labels, 0.1)


def test_item_loss_targets_the_other_views_items():
    views = {"cat": torch.zeros(2, 3, 4, dtype=torch.long), "lengths": torch.tensor([3, 3])}
    views["cat"][0, :, 1] = torch.tensor([1, 1, 2])
    views["cat"][1, :, 1] = torch.tensor([2, 2, 2])
    labels = torch.tensor([0, 0])
    right = torch.full((2, 3), -10.0)
    right[0, 2], right[1, 1], right[1, 2] = 10.0, 10.0, 10.0  # view 0 predicts view 1's items and back
    wrong = torch.full((2, 3), -10.0)
    wrong[0, 1], wrong[1, 1] = 10.0, 10.0
    assert item_loss(right, views, labels, 1) < item_loss(wrong, views, labels, 1)
