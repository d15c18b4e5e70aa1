"""The data-quality report (data_quality.json): the figures of a crafted log by file and channel, out-of-order
events against a brute-force count, each threshold stopping the run with its message, and the real Complete
Journey log and the generated default log passing the defaults."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from engine import pipeline
from engine.bundle.writer import BundleWriter
from engine.config import ConfigError, DataSchema, validate
from engine.data import Columns, EventLogError, EventLogSpec, load_store
from engine.data.checks import QUALITY_LIMITS, DataQualityError, check_quality
from engine.data.synthetic import SyntheticConfig, write
from engine.segment.data_quality import data_quality_html
from engine.segment.hierarchy import build_hierarchy
from engine.segment.profiles import segment_profiles
from engine.segment.report import write_report
from tests.conftest import compose_config

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z
ROOT = Path(__file__).resolve().parents[2]
COMPLETE_JOURNEY = ROOT.parent / "shared" / "data" / "completejourney" / "events.parquet"
DEFAULTS = OmegaConf.structured(DataSchema)
LIMITS = {key: DEFAULTS[key] for key in QUALITY_LIMITS}


def seconds(values) -> pa.Array:
    return pa.array(values, pa.timestamp("s", tz="UTC"))


def crafted_log(directory: Path, now: int) -> Path:
    """a.parquet (channels web and app) and b.csv (no channel, amount or quantity column), with one of each
    finding: a null customer, a 1970 timestamp, a duplicate, an out-of-order event in each file, an unknown
    type, a timestamp an hour after the run, a negative amount (a return), items without a category."""
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "customer_id": ["c1", "c1", "c2", "c2", "c3", "c3", "c4", "", "c5"],
        "ts": seconds([T0 + 10, T0, T0 + 5, T0 + 5, T0 + 20, now + 3600, T0 + 30, T0, 86400]),
        "event_type": ["view", "purchase", "purchase", "purchase", "signup", "view", "return", "view", "view"],
        "item_id": ["i1", "i2", "i3", "i3", "i1", "i1", "i1", "i1", "i1"],
        "category": ["k1", "k1", None, None, "k1", "k1", "k1", "k1", "k1"],
        "amount": [None, 5.0, 10.0, 10.0, None, None, -5.0, None, None],
        "channel": ["web", "web", "app", "app", "app", "web", "web", "web", "app"],
    }), directory / "a.parquet")
    (directory / "b.csv").write_text("customer_id,ts,event_type,item_id,category\n"
                                     f"c1,{T0 + 100},view,i9,k2\nc6,{T0 + 200},purchase,i9,k2\nc6,{T0 + 150},view,,\n")
    return directory


def quality_of(path, **spec) -> dict:
    return load_store(EventLogSpec(path=str(path), **spec))[1].quality.to_dict()


def test_figures_of_a_crafted_log_by_file_and_channel(tmp_path):
    q = quality_of(crafted_log(tmp_path / "log", int(time.time())), on_bad_rows="drop")
    a, b = q["files"]
    assert (Path(a["file"]).name, Path(b["file"]).name) == ("a.parquet", "b.csv")
    assert (a["rows_read"], a["rows_dropped"], a["duplicates"], a["rows_kept"]) == (9, 2, 1, 6)
    assert {k: v for k, v in a["dropped"].items() if v} == {"null_customer": 1, "ts_out_of_range": 1}
    assert (a["out_of_order"], a["ts_before_floor"], a["ts_in_future"]) == (1, 1, 1)
    assert (a["unknown_event_type"], a["unknown_types"], a["negative_amount"], a["item_without_category"]) == (
        1, {"signup": 1}, 1, 2)
    assert a["nulls"] == {"customer_id": 1, "ts": 0, "event_type": 0, "item_id": 0, "category": 2, "amount": 5,
                          "quantity": 9, "channel": 0}
    assert a["absent_columns"] == ["quantity"] and b["absent_columns"] == ["amount", "quantity", "channel"]
    assert a["null_share"]["category"] == round(2 / 9, 6)
    assert (b["rows_read"], b["rows_dropped"], b["duplicates"], b["out_of_order"]) == (3, 0, 0, 1)
    assert b["item_without_category"] == 0  # its row without a category has no item either
    assert a["events_per_customer"] == {"customers": 4, "min": 1, "p25": 1.75, "median": 2.0, "p75": 2.0,
                                        "p99": 2.0, "max": 2, "mean": 1.75, "share_one_event": 0.25}
    assert b["events_per_customer"]["customers"] == 2
    assert q["overlap"] == {"customers": 5, "in_several_files": 1,
                            "pairs": [{"files": [a["file"], b["file"]], "customers": 1}]}  # c1

    total = q["total"]
    assert (total["rows_read"], total["rows_dropped"], total["duplicates"], total["out_of_order"]) == (12, 2, 1, 2)
    per_customer = total["events_per_customer"]  # the packed log: c1 3, c2 1 (its duplicate removed), c3 2, c4 1, c6 2
    assert (per_customer["customers"], per_customer["min"], per_customer["median"], per_customer["max"],
            per_customer["share_one_event"]) == (5, 1, 2.0, 3, 0.4)

    channels = {c["channel"]: c for c in q["channels"]}
    assert list(channels) == ["web", "app", None]  # by rows read
    web, app, none = channels["web"], channels["app"], channels[None]
    assert (web["rows_read"], web["rows_dropped"], web["out_of_order"], web["ts_in_future"],
            web["negative_amount"]) == (5, 1, 1, 1, 1)
    assert (app["rows_read"], app["rows_dropped"], app["duplicates"], app["ts_before_floor"],
            app["unknown_event_type"], app["item_without_category"]) == (4, 1, 1, 1, 1, 2)
    assert (none["rows_read"], none["out_of_order"], none["null_share"]["channel"]) == (3, 1, 1.0)
    assert [channels[c]["events_per_customer"]["customers"] for c in ("web", "app", None)] == [3, 2, 2]
    assert q["ts_floor"] == "1990-01-01T00:00:00Z" and "signup" not in q["known_event_types"]


def brute_force_out_of_order(customer: list[str], ts: list[int]) -> int:
    """Per customer, the events in time order (ties in file order): the pairs the file holds reversed."""
    late = 0
    for c in set(customer):
        rows = sorted((t, i) for i, (cc, t) in enumerate(zip(customer, ts, strict=True)) if cc == c)
        late += sum(1 for (_, i), (_, j) in zip(rows, rows[1:], strict=False) if j < i)
    return late


@pytest.mark.parametrize("n_files", [1, 3])
def test_out_of_order_events_match_a_brute_force_count(tmp_path, n_files):
    rng = np.random.default_rng(n_files)
    expected = []
    for f in range(n_files):
        customer = [f"c{i}" for i in rng.integers(0, 15, 200)]  # the same customers in every file
        ts = (T0 + rng.integers(0, 40, 200)).tolist()  # ties included
        pq.write_table(pa.table({"customer_id": customer, "ts": seconds(ts), "event_type": ["view"] * 200}),
                       tmp_path / f"part-{f}.parquet")
        expected.append(brute_force_out_of_order(customer, ts))
    q = quality_of(tmp_path, dedupe=False)
    assert [f["out_of_order"] for f in q["files"]] == expected and min(expected) > 0
    assert q["total"]["out_of_order"] == sum(expected)


# -- thresholds: a file over one stops the run, naming the file, the column, the share and the key ---------------
def quality_error(path, **spec) -> str:
    spec = EventLogSpec(path=str(path), **spec)
    quality = load_store(spec)[1].quality.to_dict()
    with pytest.raises(DataQualityError) as raised:
        check_quality(quality, LIMITS, spec.columns)
    return str(raised.value)


def log_of(path: Path, n: int = 100, **columns) -> Path:
    table = {"customer_id": [f"c{i % 10}" for i in range(n)], "ts": seconds([T0 + i for i in range(n)]),
             "event_type": ["view", "purchase"] * (n // 2), "channel": ["web", "app", "app", "web", "app"] * (n // 5),
             "device": ["phone", "desktop", "phone", "tablet", "phone"] * (n // 5)}
    pq.write_table(pa.table({**table, **columns}), path)
    return path


def test_null_customers_over_max_null_share(tmp_path):
    path = log_of(tmp_path / "log.parquet", customer_id=[None if i < 5 else f"c{i % 10}" for i in range(100)])
    message = quality_error(path, on_bad_rows="drop")
    assert message.startswith(f"{path}: column 'customer_id': 5.00% of rows (5 of 100) are null or empty, over "
                              "data.max_null_share=0.01 (is data.columns.customer_id the right column?; or raise "
                              "data.max_null_share to accept it) | ")
    assert (f"{path}: column 'customer_id': 5.00% of rows (5 of 100) are bad rows, dropped: 5 null customer, over "
            "data.max_bad_row_share=0.01") in message


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_a_wrong_timestamp_unit_over_max_bad_row_share(tmp_path, unit):
    """Epoch milliseconds written as timestamp[s] (dates after year 50,000) or seconds written as
    timestamp[ms] (January 1970) in 90 rows of 100: with drop, they are bad rows; with fail (the default)
    ingest stops at once."""
    right, wrong = {"s": (1, 1000), "ms": (1000, 1)}[unit]
    ts = pa.array([(T0 + i) * (right if i % 10 == 0 else wrong) for i in range(100)], pa.timestamp(unit, tz="UTC"))
    path = log_of(tmp_path / "log.parquet", ts=ts)
    message = quality_error(path, on_bad_rows="drop")
    assert message.startswith(f"{path}: column 'ts': 90.0% of rows (90 of 100) are bad rows, dropped: 90 ts out of "
                              "range, over data.max_bad_row_share=0.01 (a wrong timestamp unit or column? expected "
                              "times from 1990-01-01 to a day past the run; or raise data.max_bad_row_share to "
                              "accept it)")
    assert ("are dated after the run started" in message) == (unit == "s")  # also over max_future_share
    with pytest.raises(EventLogError, match=r"column 'ts': out of range in rows 1, 2, 3, 4, 5 and 85 more"):
        load_store(EventLogSpec(path=str(path)))
    every = log_of(tmp_path / "every.parquet", ts=pa.array([(T0 + i) * wrong for i in range(100)],
                                                           pa.timestamp(unit, tz="UTC")))
    with pytest.raises(EventLogError, match=r"every\.parquet: every row is a bad row \(100 rows from 1 file\(s\); "
                                            r".*100 with ts out of range or not finite.*a wrong column mapping or "
                                            r"timestamp unit\?\)"):
        load_store(EventLogSpec(path=str(every), on_bad_rows="drop"))


def test_timestamps_after_the_run_over_max_future_share(tmp_path):
    ahead = int(time.time()) + 2 * 3600  # within the day ingest accepts, so not a bad row
    path = log_of(tmp_path / "log.parquet", ts=seconds([ahead if i % 20 == 0 else T0 + i for i in range(100)]))
    message = quality_error(path)
    assert message.startswith(f"{path}: column 'ts': 5.00% of rows (5 of 100) are dated after the run started (")
    assert message.endswith("Z), over data.max_future_share=0.01 (a time zone or clock error? timestamps without a "
                            "zone are read as UTC; or raise data.max_future_share to accept it)")


def test_a_wrong_event_type_column_over_max_unknown_event_type_share(tmp_path):
    path = log_of(tmp_path / "log.parquet")
    message = quality_error(path, columns=Columns(event_type="device"))
    assert message == (f"{path}: column 'device': 100.0% of rows (100 of 100) have an event type that is no "
                       "purchase, return or known type ('phone' 60, 'desktop' 20, 'tablet' 20), over data.max_unknown_event_type_share="
                       "0.9 (is data.columns.event_type the right column? name your types in data.purchase_types, "
                       "data.return_types or data.known_types; or raise data.max_unknown_event_type_share to accept "
                       "it)")


def test_the_run_stops_before_training_and_names_the_threshold(tmp_path):
    path = log_of(tmp_path / "log.parquet")
    cfg = compose_config([f"data.path={path}", "data.columns.event_type=device", f"out_dir={tmp_path / 'b'}"])
    with pytest.raises(DataQualityError, match="over data.max_unknown_event_type_share=0.9"):
        pipeline.load_data(cfg)
    raised = compose_config([f"data.path={path}", "data.columns.event_type=device", f"out_dir={tmp_path / 'b'}",
                             "data.max_unknown_event_type_share=1.0", "data.min_count=1"])
    data = pipeline.load_data(raised)  # raised, it passes: the figures travel to the bundle
    assert data.quality["total"]["unknown_event_type"] == 100
    assert data.quality["thresholds"]["max_unknown_event_type_share"] == 1.0


def test_data_quality_json_is_written_into_the_bundle(tmp_path):
    path = crafted_log(tmp_path / "log", int(time.time()))
    loose = ["data.max_null_share=0.5", "data.max_bad_row_share=0.5", "data.max_future_share=0.5"]
    cfg = compose_config([f"data.path={path}", "data.on_bad_rows=drop", f"out_dir={tmp_path / 'bundle'}", *loose])
    with pytest.raises(DataQualityError, match=r"b.csv|a.parquet"):
        pipeline.load_data(compose_config([f"data.path={path}", "data.on_bad_rows=drop"]))
    data = pipeline.load_data(cfg)
    with BundleWriter(cfg.out_dir) as bundle:
        pipeline.describe(cfg, bundle, data)
    written = json.loads((tmp_path / "bundle" / "data_quality.json").read_text())
    assert written["total"]["rows_read"] == 12 and written["files"][0]["duplicates"] == 1
    assert written["thresholds"] == {"max_null_share": 0.5, "max_bad_row_share": 0.5, "max_future_share": 0.5,
                                     "max_unknown_event_type_share": 0.9, "max_unmapped_share": 0.5}


# -- real logs pass the defaults ---------------------------------------------------------------------------------
@pytest.mark.skipif(not COMPLETE_JOURNEY.exists(), reason="the Complete Journey log is not in ../shared/data")
def test_complete_journey_passes_the_defaults():
    spec = EventLogSpec(path=str(COMPLETE_JOURNEY), known_types=list(DEFAULTS.known_types))
    quality = load_store(spec)[1].quality.to_dict()
    check_quality(quality, LIMITS, spec.columns)
    total = quality["total"]
    assert (total["rows_read"], total["rows_dropped"], total["duplicates"]) == (1_074_706, 0, 5)
    assert (total["out_of_order"], total["ts_in_future"], total["unknown_event_type"]) == (0, 0, 0)
    assert total["item_without_category"] == 3404 and total["nulls"]["category"] == 3404
    assert total["events_per_customer"]["customers"] == 2444
    assert [c["channel"] for c in quality["channels"]] == ["store"]


def test_the_generated_default_log_passes_the_defaults(tmp_path):
    path = write(SyntheticConfig(n_customers=300, mean_events=20, seed=0, n_items=200), tmp_path)
    spec = EventLogSpec(path=str(path))
    quality = load_store(spec)[1].quality.to_dict()
    check_quality(quality, LIMITS, spec.columns)
    total = quality["total"]
    assert total["rows_dropped"] == total["unknown_event_type"] == total["ts_in_future"] == 0
    assert sorted(c["channel"] for c in quality["channels"]) == ["app", "email", "store", "web"]
    assert sum(c["rows_read"] for c in quality["channels"]) == total["rows_read"]


@pytest.mark.parametrize("override, message", [
    ("data.max_bad_row_share=1.5", "data.max_bad_row_share=1.5: expected a share of rows in [0, 1]"),
    ("data.max_unknown_event_type_share=-0.1", "data.max_unknown_event_type_share=-0.1: expected a share of rows"),
    ("data.min_year=3000", "data.min_year=3000: expected a year between 1 and "),
])
def test_thresholds_and_the_earliest_year_are_checked_before_any_work(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_config([override]))


# -- the report's section -----------------------------------------------------------------------------------------
def test_the_report_shows_the_data_quality_in_a_marketers_numbers(tmp_path):
    q = quality_of(crafted_log(tmp_path / "log", int(time.time())), on_bad_rows="drop")
    q["thresholds"] = LIMITS
    section = data_quality_html(q)
    assert section.startswith('<p class="lead">12 events read from 2 file(s) at ')
    assert "UTC: 9 kept, 2 (17%) dropped as bad rows, 1 (8.3%) duplicates removed. 5 customers; events per " \
           "customer: median 2, middle half 1 to 2, top 1% from 3, most 3; 40% of customers have a single event. " \
           "1 of 5 customers appear in more than one file (a.parquet and b.csv: 1). Unknown event types: signup " \
           "(1)." in section
    assert "data.max_unknown_event_type_share 90%" in section
    events, missing = ({cells[0]: cells[1:] for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row)
                                                          for row in re.findall(r"<tr>(.*?)</tr>", table)) if cells}
                       for table in section.split("</table>")[:2])
    assert events["a.parquet"] == ["9", "2 (22%): 1 no customer, 1 time out of range", "1 (11%)", "1 (11%)",
                                   "1 (11%)", "1 (11%)", "1 (11%)", "2 (22%)", "4", "2 (2)", "25%"]
    assert events["channel web"][:2] == ["5", "1 (20%): 1 no customer"] and events["all files"][0] == "12"
    assert list(events) == ["a.parquet", "b.csv", "all files", "channel web", "channel app", "channel (none)"]
    assert missing["a.parquet"] == ["1 (11%)", "0", "0", "0", "2 (22%)", "5 (56%)", "absent", "0"]
    assert missing["b.csv"][5:] == ["absent", "absent", "absent"]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    labels = np.arange(60) % 3
    customers = {"recency_days": rng.uniform(0, 90, 60), "frequency": rng.integers(0, 9, 60),
                 "spend": rng.uniform(0, 99, 60), "n_events": rng.integers(1, 9, 60), "top_category": ["k1"] * 60,
                 "top_item": ["i1"] * 60, "top_channel": ["web"] * 60}
    profiles = segment_profiles(labels, 3, pa.table(customers))
    page = write_report(tmp_path / "report.html", profiles, x, labels,
                        build_hierarchy(np.eye(3, 4, dtype=np.float32), np.bincount(labels)),
                        data_quality=q).read_text()
    assert "<h2>Data quality</h2>" in page and section in page
