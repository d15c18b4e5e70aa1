"""Segment profiles on a hand-made customer table with exact expected figures."""

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from engine.segment.profiles import segment_profiles

LABELS = np.array([0, 0, 0, 1, 1, 2])  # segment 3 is empty


def customers() -> pa.Table:
    return pa.table(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "recency_days": pa.array([1.0, 3.0, 10.0, 5.0, 7.0, 2.0]),
            "frequency": pa.array([1, 2, 3, 4, 0, 1], pa.int64()),
            "spend": pa.array([10.0, float("nan"), 20.0, 5.0, None, 0.0]),
            "spend_known": [True, False, True, True, False, True],
            "n_events": pa.array([4, 5, 6, 7, 8, 9], pa.int64()),
            "top_category": ["shoes", "shoes", "<script>", "bags", None, "hats"],
            "top_item": ["i1", "i2", "i2", "i3", "i4", None],
            "top_channel": ["web", "web", "app", None, "app", "web"],
            "expected_spend": pa.array([1.0, 2.0, 3.0, 4.0, 5.0, None]),
        }
    )


def test_exact_figures_per_segment():
    p = segment_profiles(LABELS, 4, customers()).to_pydict()
    assert p["segment"] == [0, 1, 2, 3]
    assert p["size"] == [3, 2, 1, 0]
    assert p["share"] == pytest.approx([0.5, 1 / 3, 1 / 6, 0.0])
    assert p["median_recency_days"][:3] == [3.0, 6.0, 2.0]
    assert p["mean_recency_days"][:3] == pytest.approx([14 / 3, 6.0, 2.0])
    assert p["mean_frequency"][:3] == pytest.approx([2.0, 2.0, 1.0])
    assert p["total_spend"] == pytest.approx([30.0, 5.0, 0.0, 0.0])  # unknown spend counts as 0
    assert p["mean_spend"][:3] == pytest.approx([10.0, 2.5, 0.0])
    assert p["mean_n_events"][:3] == pytest.approx([5.0, 7.5, 9.0])
    assert p["top_categories"] == [["shoes", "<script>"], ["bags"], ["hats"], []]
    assert p["top_items"] == [["i2", "i1"], ["i3", "i4"], [], []]
    assert json.loads(p["channel_mix"][0]) == pytest.approx({"web": 2 / 3, "app": 1 / 3}, abs=1e-6)
    assert json.loads(p["channel_mix"][1]) == {"app": 0.5, "unknown": 0.5}
    assert json.loads(p["channel_mix"][2]) == {"web": 1.0}
    assert json.loads(p["channel_mix"][3]) == {}
    assert p["mean_expected_spend"][:2] == pytest.approx([2.0, 4.5])
    assert math.isnan(p["mean_expected_spend"][2]), "segment 2's only forecast is null"
    assert p["mean_spend_known"][:3] == pytest.approx([2 / 3, 0.5, 1.0])
    assert "mean_customer_id" not in p
    for column in ("median_recency_days", "mean_recency_days", "mean_frequency", "mean_spend"):
        assert math.isnan(p[column][3]), f"empty segment has NaN {column}"


def test_top_n_limits_lists():
    p = segment_profiles(LABELS, 4, customers(), top_n=1).to_pydict()
    assert p["top_categories"] == [["shoes"], ["bags"], ["hats"], []]


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="5 labels but 6 customer rows"):
        segment_profiles(LABELS[:5], 4, customers())
    with pytest.raises(ValueError, match="top_channel"):
        segment_profiles(LABELS, 4, customers().drop_columns(["top_channel"]))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        segment_profiles(LABELS, 2, customers())
