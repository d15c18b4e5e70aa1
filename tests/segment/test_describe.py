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
    assert {"description", "channel_lift", "spend_lift", "mean_p_churn", "mean_likely_to_lapse"} <= set(
        profiles.column_names)
    page = (bundle / "report.html").read_text()
    assert "What sets each segment apart" in page
    assert all(f'<span class="desc">{d}</span>' in page and "forecast revenue" in d
               for d in profiles["description"].to_pylist())
    assert "<h2>Value by segment: forecast revenue and gains</h2>" in page


def test_a_description_says_in_one_sentence_who_a_segment_is():
    import json

    import pyarrow as pa

    from engine.segment.describe import descriptions

    row = {"segment": 0, "size": 1834, "share": 0.1834, "value_tier": "top", "median_days_between_purchases": 6.5,
           "distinctive_categories": ["WINE", "DAIRY"], "category_lift": [10.0, 2.12],
           "channel_mix": json.dumps({"web": 0.64, "store": 0.36}), "mean_expected_spend": 52.5,
           "mean_p_churn": 0.234, "mean_likely_to_lapse": 0.18, "lapsing_share": 0.3}
    (sentence,) = descriptions(pa.table({k: [v] for k, v in row.items()}), horizon_days=30)
    assert sentence == ("18% of customers, top value, buying weekly; over-index on wine ×10.0, dairy ×2.1; mostly "
                        "web (64%); forecast revenue 96,285 over the next 30 days; churn risk 23%, 18% likely to "
                        "lapse.")
    bare = {"segment": 1, "size": 3, "share": 0.03, "channel_mix": "{}", "lapsing_share": 0.5}
    assert descriptions(pa.table({k: [v] for k, v in bare.items()})) == ["3.0% of customers; 50% lapsing."]
