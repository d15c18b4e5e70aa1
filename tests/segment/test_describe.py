"""Segment descriptions: lift of categories and items against the base, value tier, cadence and name."""

from __future__ import annotations

import numpy as np

from engine.segment.describe import describe
from tests.index.test_signature import base


def test_lift_value_tier_and_name_say_what_sets_a_segment_apart():
    store, as_of = base()
    wine = store.customer_index([f"c{c:03d}" for c in range(40)])
    big = store.customer_index([f"c{c:03d}" for c in range(300, 400)])
    labels = np.full(store.n_customers, 2, dtype=np.int64)
    labels[wine], labels[big] = 0, 1
    spend = np.where(labels == 1, 100.0, 10.0)
    table = describe(store, labels, 3, as_of, spend).to_pylist()
    assert table[0]["distinctive_categories"] == ["wine"] and table[0]["category_lift"] == [10.0]
    assert table[0]["distinctive_items"][0] == "wine"
    assert table[1]["value_tier"] == "top" and table[2]["value_tier"] == "low"
    assert table[0]["name"].startswith("low value, ") and table[0]["name"].endswith(": wine")
    assert all(0.0 <= row["lapsing_share"] <= 1.0 for row in table)
    assert all(row["median_days_between_purchases"] > 0 for row in table)


def test_the_report_and_profiles_of_a_bundle_name_the_segments(bundle):
    import pyarrow.parquet as pq

    profiles = pq.read_table(bundle / "profiles.parquet")
    assert {"name", "value_tier", "distinctive_categories", "category_lift", "lapsing_share"} <= set(
        profiles.column_names)
    assert all(profiles["name"].to_pylist())
    assert "What sets each segment apart" in (bundle / "report.html").read_text()
