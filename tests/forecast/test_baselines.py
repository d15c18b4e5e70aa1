"""Forecast baselines: RFM inputs and the naive rate by hand, RFM quantiles on a constructed base, BG/NBD on a
generated log."""

import logging
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.data.store import build_store
from engine.data.synthetic import SyntheticConfig, generate
from engine.forecast import all_baselines, bgnbd_gamma_gamma, future_truth, naive, rfm_inputs, rfm_quantile

DAY = 86400
T0 = 1_700_006_400  # a UTC midnight


def make_store(events):
    """events: [(customer_id, day (float, from T0), event_type, amount or None)] -> SequenceStore."""
    customer, day, kind, amount = zip(*events, strict=True)
    n = len(events)
    table = pa.table(
        {
            "customer_id": pa.array(customer, pa.string()),
            "ts": pa.array(T0 + np.round(np.array(day) * DAY).astype(np.int64)),
            "event_type": pa.array(kind, pa.string()),
            "item_id": pa.array(["i1"] * n, pa.string()),
            "category": pa.array([None] * n, pa.string()),
            "channel": pa.array([None] * n, pa.string()),
            "amount": pa.array(amount, pa.float64()),
            "quantity": pa.array([1.0] * n, pa.float64()),
        }
    )
    return build_store(table, ["purchase"], ["return"])[0]


HAND = [
    ("a", 0.5, "purchase", 10.0),
    ("a", 0.7, "purchase", 5.0),  # two purchases on day 0
    ("a", 3.25, "purchase", 20.0),
    ("a", 10.5, "purchase", None),
    ("a", 11.0, "return", -10.0),
    ("a", 12.0, "view", None),
    ("b", 5.5, "view", None),
    ("b", 6.0, "cart", 3.0),  # never bought
    ("c", 19.9, "purchase", 7.0),  # one purchase, 0.1 day before as_of
]
AS_OF = T0 + 20 * DAY


def test_rfm_inputs_by_hand():
    f = rfm_inputs(make_store(HAND), AS_OF)
    expected = {  # rows a, b, c
        "frequency": [2, 0, 0],  # purchase days 0, 3, 10 -> 2 repeat days
        "recency": [10, 0, 0],
        "T": [20, 15, 1],  # from the start of the first purchase day (b: of the first event's day)
        "monetary": [10, 0, 0],  # repeat days spend 20 and 0 (unknown amount)
        "n_purchases": [4, 0, 1],
        "spend": [35, 0, 7],
        "first_event_days": [19.5, 14.5, 0.1],
        "last_event_days": [8, 14, 0.1],
    }
    assert set(f) == set(expected)
    for key, values in expected.items():
        assert f[key].dtype == np.float64
        np.testing.assert_allclose(f[key], values, atol=1e-9, err_msg=key)


def test_naive_by_hand():
    pred = naive(make_store(HAND), AS_OF, horizon_days=10)
    # a: 4 purchases over 19.5 days; c: its 0.1-day tenure is floored at 1 day
    np.testing.assert_allclose(pred["expected_purchases"], [4 / 19.5 * 10, 0, 10])
    np.testing.assert_allclose(pred["expected_spend"], [35 / 19.5 * 10, 0, 70])
    np.testing.assert_allclose(pred["p_buy"], 1 - np.exp(-pred["expected_purchases"]))


def test_future_truth_counts_purchases_and_known_amounts():
    truth = future_truth(make_store(HAND).after(T0 + 3 * DAY))
    np.testing.assert_allclose(truth["purchases"], [2, 0, 1])
    np.testing.assert_allclose(truth["spend"], [20, 0, 7])


def rfm_base():
    """60 days, as_of day 60, H 20 (calibration cut at day 40). 30 frequent buyers (every 2 days, 10 each in
    [40, 60)); 30 lapsed (days 1 and 3), of whom 6 buy again on day 50. All amounts 10."""
    events = [(f"a{i:02d}", d + 0.5, "purchase", 10.0) for i in range(30) for d in range(0, 60, 2)]
    events += [(f"b{i:02d}", d + 0.5, "purchase", 10.0) for i in range(30) for d in (1, 3)]
    events += [(f"b{i:02d}", 50.5, "purchase", 10.0) for i in range(6)]
    return make_store(events), T0 + 60 * DAY


def test_rfm_quantile_reproduces_cell_means_and_falls_back():
    store, as_of = rfm_base()
    pred = rfm_quantile(store, as_of, horizon_days=20, q=2, min_cell=5)
    frequent, lapsed, came_back = np.arange(30), np.arange(36, 60), np.arange(30, 36)
    # calibration cells: frequent bought 10 (spend 100) each; 6 of 30 lapsed bought once
    np.testing.assert_allclose(pred["expected_purchases"][frequent], 10)
    np.testing.assert_allclose(pred["expected_spend"][frequent], 100)
    np.testing.assert_allclose(pred["p_buy"][frequent], 1)
    np.testing.assert_allclose(pred["expected_purchases"][lapsed], 0.2)
    np.testing.assert_allclose(pred["expected_spend"][lapsed], 2)
    np.testing.assert_allclose(pred["p_buy"][lapsed], 0.2)
    # recent but infrequent: no calibration customer in its R x F cell -> the recent R cell (the frequent)
    np.testing.assert_allclose(pred["expected_purchases"][came_back], 10)


def test_rfm_quantile_without_calibration_history_is_none(caplog):
    with caplog.at_level(logging.WARNING):
        assert rfm_quantile(make_store(HAND), AS_OF, horizon_days=30) is None
    assert "calibration cut" in caplog.text


@pytest.fixture(scope="module")
def generated():
    """(history, future truth, as_of): 500 generated customers, cutoff day 300, horizon 30 days; customers
    with history before the cutoff only."""
    events, _ = generate(SyntheticConfig(n_customers=500, seed=0))
    events = events.set_column(1, "ts", pc.cast(events["ts"], pa.int64()))
    events = events.set_column(6, "quantity", pc.cast(events["quantity"], pa.float64()))
    store = build_store(events, ["purchase"], ["return"])[0]
    as_of = int(np.datetime64("2024-01-01", "s").astype(np.int64)) + 300 * DAY
    rows = np.flatnonzero(store.before(as_of).lengths() > 0)
    return (
        store.before(as_of).take(rows),
        future_truth(store.after(as_of, as_of + 30 * DAY).take(rows)),
        as_of,
    )


def test_rfm_quantile_ranks_frequent_recent_above_lapsed(generated):
    history, _, as_of = generated
    f = rfm_inputs(history, as_of)
    pred = rfm_quantile(history, as_of, 30)
    since_last = f["T"] - f["recency"]
    active = (f["n_purchases"] >= np.quantile(f["n_purchases"], 0.8)) & (since_last <= 15)
    lapsed = (f["n_purchases"] > 0) & (since_last >= 120)
    assert active.sum() >= 10 and lapsed.sum() >= 10
    assert pred["expected_purchases"][active].min() > pred["expected_purchases"][lapsed].max()
    assert pred["p_buy"][active].mean() > pred["p_buy"][lapsed].mean() + 0.3


def test_bgnbd_total_within_half_of_realised(generated):
    pytest.importorskip("lifetimes")
    history, truth, as_of = generated
    pred = bgnbd_gamma_gamma(history, as_of, 30)
    assert pred is not None
    for key in ("expected_purchases", "expected_spend", "p_buy"):
        assert pred[key].shape == (history.n_customers,) and pred[key].dtype == np.float64
        assert np.isfinite(pred[key]).all() and (pred[key] >= 0).all()
    assert (pred["p_buy"] <= 1).all()
    assert abs(pred["expected_purchases"].sum() / truth["purchases"].sum() - 1) < 0.5
    assert abs(pred["expected_spend"].sum() / truth["spend"].sum() - 1) < 0.5
    assert set(all_baselines(history, as_of, 30)) == {"naive", "rfm_quantile", "bgnbd_gamma_gamma"}


def test_rfm_inputs_match_lifetimes_summary(generated):
    pd = pytest.importorskip("pandas")
    utils = pytest.importorskip("lifetimes.utils")
    history, _, as_of = generated
    p = history.is_purchase()
    df = pd.DataFrame(
        {
            "customer": history.customer_rows()[p],
            "amount": history.columns["amount"][p].astype(float),
            "date": pd.to_datetime(history.columns["ts"][p], unit="s"),
        }
    )
    summary = utils.summary_data_from_transaction_data(
        df,
        "customer",
        "date",
        monetary_value_col="amount",
        observation_period_end=pd.Timestamp(as_of, unit="s"),
    )
    f = rfm_inputs(history, as_of)
    rows = summary.index.to_numpy()
    for ours, theirs in [
        ("frequency", "frequency"),
        ("recency", "recency"),
        ("T", "T"),
        ("monetary", "monetary_value"),
    ]:
        np.testing.assert_allclose(f[ours][rows], summary[theirs].to_numpy(), rtol=1e-6, err_msg=ours)


def test_bgnbd_without_lifetimes_is_none_and_logged(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "lifetimes", None)  # makes `import lifetimes` raise ImportError
    with caplog.at_level(logging.WARNING):
        assert bgnbd_gamma_gamma(make_store(HAND), AS_OF, 10) is None
        assert set(all_baselines(make_store(HAND), AS_OF, 30)) == {"naive"}  # nor history before as_of - 30
    assert "lifetimes" in caplog.text and "eval" in caplog.text


def test_bgnbd_fit_failure_is_none_and_logged(monkeypatch, caplog):
    lifetimes = pytest.importorskip("lifetimes")
    from lifetimes.utils import ConvergenceError

    def fail(*args, **kwargs):
        print("optimiser state")  # lifetimes prints before raising: kept out of stdout
        raise ConvergenceError("The model did not converge.")

    monkeypatch.setattr(lifetimes.BetaGeoFitter, "fit", fail)
    with caplog.at_level(logging.WARNING):
        assert bgnbd_gamma_gamma(make_store(HAND), AS_OF, 10) is None
    assert "did not converge" in caplog.text
