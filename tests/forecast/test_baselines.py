"""Forecast baselines: RFM inputs, the rate x horizon and zero by hand, RFM cells on a constructed base (also over
a horizon as long as the history), BG/NBD and Pareto/NBD on a generated log."""

import logging
import sys

import numpy as np
import pytest

from engine.forecast import (
    all_baselines,
    bgnbd_gamma_gamma,
    naive,
    pareto_nbd,
    rfm_inputs,
    rfm_quantile,
    transaction_inputs,
    zero,
)

DAY = 86400
T0 = 1_700_006_400  # as in conftest: a UTC midnight
KEYS = ("expected_purchases", "expected_spend", "p_buy")

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


def test_rfm_inputs_by_hand(make_store):
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


def test_rate_times_horizon_and_zero_by_hand(make_store):
    store = make_store(HAND)
    pred = naive(store, AS_OF, 10, "day")
    # a: 3 purchase days over 19.5 days (4 baskets in basket units); c: its 0.1-day tenure is floored at 1 day
    np.testing.assert_allclose(pred["expected_purchases"], [3 / 19.5 * 10, 0, 10])
    np.testing.assert_allclose(
        naive(store, AS_OF, 10, "basket")["expected_purchases"], [4 / 19.5 * 10, 0, 10]
    )
    np.testing.assert_allclose(pred["expected_spend"], [35 / 19.5 * 10, 0, 70])
    np.testing.assert_allclose(pred["p_buy"], 1 - np.exp(-pred["expected_purchases"]))
    nothing = zero(store, AS_OF, 10, "day")
    assert set(nothing) == set(KEYS)
    assert all(
        nothing[k].shape == (3,) and nothing[k].dtype == np.float64 and not nothing[k].any() for k in KEYS
    )


def rfm_base(make_store):
    """60 days, as_of day 60. 30 frequent buyers (every 2 days from day 0.5); 30 lapsed (days 1.5 and 3.5), of
    whom 6 buy again on day 50.5. All amounts 10."""
    events = [(f"a{i:02d}", d + 0.5, "purchase", 10.0) for i in range(30) for d in range(0, 60, 2)]
    events += [(f"b{i:02d}", d + 0.5, "purchase", 10.0) for i in range(30) for d in (1, 3)]
    events += [(f"b{i:02d}", 50.5, "purchase", 10.0) for i in range(6)]
    return make_store(events), T0 + 60 * DAY


FREQUENT, CAME_BACK, LAPSED = np.arange(30), np.arange(30, 36), np.arange(36, 60)


def test_rfm_cells_reproduce_cell_means_and_fall_back(make_store):
    store, as_of = rfm_base(make_store)
    pred = rfm_quantile(store, as_of, 20, "basket", q=2, min_cell=5)  # replays [40, 60): H <= half the span
    # calibration cells: frequent bought 10 (spend 100) each; 6 of 30 lapsed bought once
    np.testing.assert_allclose(pred["expected_purchases"][FREQUENT], 10)
    np.testing.assert_allclose(pred["expected_spend"][FREQUENT], 100)
    np.testing.assert_allclose(pred["p_buy"][FREQUENT], 1)
    np.testing.assert_allclose(pred["expected_purchases"][LAPSED], 0.2)
    np.testing.assert_allclose(pred["expected_spend"][LAPSED], 2)
    np.testing.assert_allclose(pred["p_buy"][LAPSED], 0.2)
    # recent but infrequent: no calibration customer in its R x F cell -> the recent R cell (the frequent)
    np.testing.assert_allclose(pred["expected_purchases"][CAME_BACK], 10)


def test_rfm_cells_over_a_horizon_as_long_as_the_history(make_store):
    store, as_of = rfm_base(make_store)
    pred = rfm_quantile(store, as_of, 60, "basket", q=2, min_cell=5)
    # replays the last half span, 29.75 days from day 30.25: frequent bought 15 times, 6 of 30 lapsed once
    scale = 60 / 29.75
    np.testing.assert_allclose(pred["expected_purchases"][FREQUENT], 15 * scale)
    np.testing.assert_allclose(pred["expected_spend"][FREQUENT], 150 * scale)
    np.testing.assert_allclose(pred["p_buy"][FREQUENT], 1)
    np.testing.assert_allclose(pred["expected_purchases"][LAPSED], 0.2 * scale)
    np.testing.assert_allclose(pred["p_buy"][LAPSED], 1 - 0.8**scale)
    # a horizon longer than the history, and a history of 19.5 days, still get a forecast
    assert rfm_quantile(store, as_of, 365, "basket") is not None
    assert np.isfinite(rfm_quantile(make_store(HAND), AS_OF, 30, "basket")["expected_purchases"]).all()


def test_rfm_cells_without_history_is_none(make_store, caplog):
    with caplog.at_level(logging.WARNING):
        assert rfm_quantile(make_store(HAND).before(T0), AS_OF, 30, "basket") is None
    assert "calibration cut" in caplog.text


def test_rfm_cells_rank_frequent_recent_above_lapsed(generated):
    history, _, as_of, unit = generated
    f = transaction_inputs(history, as_of, unit)
    pred = rfm_quantile(history, as_of, 30, unit)
    since_last = f["T"] - f["recency"]
    active = (f["transactions"] >= np.quantile(f["transactions"], 0.8)) & (since_last <= 15)
    lapsed = (f["transactions"] > 0) & (since_last >= 120)
    assert active.sum() >= 10 and lapsed.sum() >= 10
    assert pred["expected_purchases"][active].min() > pred["expected_purchases"][lapsed].max()
    assert pred["p_buy"][active].mean() > pred["p_buy"][lapsed].mean() + 0.3


def assert_forecast(pred, n):
    for key in KEYS:
        assert pred[key].shape == (n,) and pred[key].dtype == np.float64, key
        assert np.isfinite(pred[key]).all() and (pred[key] >= 0).all(), key
    assert (pred["p_buy"] <= 1).all()


@pytest.mark.parametrize(
    ("baseline", "params"),
    [(bgnbd_gamma_gamma, ("r", "alpha", "a", "b")), (pareto_nbd, ("r", "alpha", "s", "beta"))],
)
def test_lifetimes_totals_within_a_quarter_of_realised(generated, baseline, params):
    pytest.importorskip("lifetimes")
    history, truth, as_of, unit = generated
    pred = baseline(history, as_of, 30, unit)
    assert_forecast(pred, history.n_customers)
    assert set(pred["params"]) == {*params, "penalizer", "p", "q", "v", "gamma_gamma_penalizer"}
    assert all(np.isfinite(v) and isinstance(v, float) for v in pred["params"].values())
    assert pred["params"]["penalizer"] == 0.0  # converges unpenalised: the ladder starts at 0
    assert abs(pred["expected_purchases"].sum() / truth["purchases"].sum() - 1) < 0.25
    assert abs(pred["expected_spend"].sum() / truth["spend"].sum() - 1) < 0.25


def test_all_baselines(generated, make_store):
    pytest.importorskip("lifetimes")
    history, _, as_of, unit = generated
    results = all_baselines(history, as_of, 30, unit)
    assert list(results) == ["bgnbd_gamma_gamma", "pareto_nbd", "naive", "rfm_quantile", "zero"]
    for pred in results.values():
        assert_forecast(pred, history.n_customers)


def test_lifetimes_missing_is_none_and_logged(make_store, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "lifetimes", None)  # makes `import lifetimes` raise ImportError
    with caplog.at_level(logging.WARNING):
        assert bgnbd_gamma_gamma(make_store(HAND), AS_OF, 10, "basket") is None
        assert pareto_nbd(make_store(HAND), AS_OF, 10, "basket") is None
        assert set(all_baselines(make_store(HAND), AS_OF, 30, "basket")) == {"naive", "rfm_quantile", "zero"}
    assert "lifetimes" in caplog.text and "eval" in caplog.text
