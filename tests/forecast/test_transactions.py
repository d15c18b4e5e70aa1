"""Transactions by hand: baskets (lines sharing a timestamp) against purchase days, and the unit read from a log."""

import numpy as np
import pytest

from engine.forecast import (
    count_transactions,
    future_truth,
    transaction_inputs,
    transaction_starts,
    transaction_unit,
)

DAY = 86400
T0 = 1_700_006_400  # as in conftest: a UTC midnight

LINES = [
    ("a", 0.5, "purchase", 10.0),
    ("a", 0.5, "purchase", 5.0),  # the same basket
    ("a", 0.7, "view", None),
    ("a", 0.7, "purchase", 2.0),  # another basket, the same day
    ("a", 3.25, "purchase", 20.0),
    ("a", 10.5, "purchase", None),
    ("a", 10.5, "purchase", 4.0),  # a basket with an unknown amount
    ("a", 11.0, "return", -10.0),
    ("b", 5.5, "view", None),
    ("b", 6.0, "cart", 3.0),  # never bought
    ("c", 19.9, "purchase", 7.0),
]
AS_OF = T0 + 20 * DAY


def test_baskets_and_days_by_hand(make_store):
    store = make_store(LINES)
    np.testing.assert_array_equal(count_transactions(store, "basket"), [4, 0, 1])  # a: 0.5, 0.7, 3.25, 10.5
    np.testing.assert_array_equal(count_transactions(store, "day"), [3, 0, 1])  # a: days 0, 3, 10
    starts = transaction_starts(store, "basket")
    assert starts.dtype == bool and starts.shape == (store.n_events,)
    assert not (starts & ~store.is_purchase()).any()  # only purchases open a transaction
    with pytest.raises(ValueError, match="transaction unit 'week'"):
        transaction_starts(store, "week")


def test_future_truth_counts_events_or_transactions(make_store):
    future = make_store(LINES).after(T0 + 3 * DAY)
    np.testing.assert_allclose(future_truth(future)["purchases"], [3, 0, 1])  # purchase events
    np.testing.assert_allclose(future_truth(future, "basket")["purchases"], [2, 0, 1])
    np.testing.assert_allclose(future_truth(future, "day")["purchases"], [2, 0, 1])
    np.testing.assert_allclose(future_truth(future, "basket")["spend"], [24, 0, 7])  # unknown amount as 0


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (
            "basket",
            {  # a: baskets at 0.5 (15), 0.7 (2), 3.25 (20), 10.5 (4)
                "frequency": [3, 0, 0],
                "recency": [10, 0, 0],
                "T": [19.5, 14.5, 0.1],  # b: from its first event
                "monetary": [26 / 3, 0, 0],
                "transactions": [4, 0, 1],
            },
        ),
        (
            "day",
            {  # a: days opened at 0.5 (17), 3.25 (20), 10.5 (4)
                "frequency": [2, 0, 0],
                "recency": [10, 0, 0],
                "T": [19.5, 14.5, 0.1],
                "monetary": [12, 0, 0],
                "transactions": [3, 0, 1],
            },
        ),
    ],
)
def test_transaction_inputs_by_hand(make_store, unit, expected):
    f = transaction_inputs(make_store(LINES), AS_OF, unit)
    expected |= {"spend": [41, 0, 7], "first_event_days": [19.5, 14.5, 0.1], "last_event_days": [9, 14, 0.1]}
    assert set(f) == set(expected)
    for key, values in expected.items():
        assert f[key].dtype == np.float64
        np.testing.assert_allclose(f[key], values, atol=1e-9, err_msg=key)


def test_unit_read_from_the_log(make_store):
    assert transaction_unit(make_store(LINES)) == "basket"  # 2 of 6 repeat lines share their time
    one_per_line = [(c, d + 0.01 * i, k, a) for i, (c, d, k, a) in enumerate(LINES)]
    assert transaction_unit(make_store(one_per_line)) == "day"
