"""Reading an event log: files, directories and globs, column mapping, timestamps, and every bad-input error."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data import Columns, EventLogError, EventLogSpec, load_store, read_events

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z


def write_parquet(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def write_csv(path: Path, text: str) -> Path:
    """text: the CSV, one row per line, leading/trailing blank lines and indentation removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
    return path


LOG_CSV = """
    customer_id,ts,event_type,item_id,category,amount,quantity,channel
    c2,2024-03-01T00:00:10Z,view,i1,cat1,5.0,1,web
    c1,2024-03-01T00:00:00Z,purchase,i2,cat1,12.5,2,app
    c2,2024-03-01T00:00:20Z,purchase,i1,cat1,5.0,1,web
"""


def log_columns() -> dict:
    """LOG_CSV's rows as Parquet-ready columns (native timestamps)."""
    return {
        "customer_id": ["c2", "c1", "c2"],
        "ts": pa.array([T0 + 10, T0, T0 + 20], pa.timestamp("s", tz="UTC")),
        "event_type": ["view", "purchase", "purchase"],
        "item_id": ["i1", "i2", "i1"],
        "category": ["cat1", "cat1", "cat1"],
        "amount": [5.0, 12.5, 5.0],
        "quantity": [1, 2, 1],
        "channel": ["web", "app", "web"],
    }


def read(path, **spec) -> pa.Table:
    return read_events(EventLogSpec(path=str(path), **spec))[0]


def error(path, **spec) -> str:
    with pytest.raises(EventLogError) as raised:
        load_store(EventLogSpec(path=str(path), **spec))
    return str(raised.value)


# -- reading -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_reads_one_file_in_canonical_columns(tmp_path, fmt):
    path = (write_parquet(tmp_path / "log.parquet", log_columns()) if fmt == "parquet"
            else write_csv(tmp_path / "log.csv", LOG_CSV))
    events, report = read_events(EventLogSpec(path=str(path)))
    assert events.column_names == ["customer_id", "ts", "event_type", "item_id", "category", "channel",
                                   "amount", "quantity"]
    assert events["customer_id"].to_pylist() == ["c2", "c1", "c2"]
    assert events["ts"].to_pylist() == [T0 + 10, T0, T0 + 20]
    assert events["item_id"].to_pylist() == ["i1", "i2", "i1"]
    assert events["amount"].to_pylist() == [5.0, 12.5, 5.0]
    assert events["quantity"].to_pylist() == [1.0, 2.0, 1.0]
    assert events.schema.field("amount").type == pa.float32()  # what the store keeps
    assert report.rows_read == 3 and report.files == [str(path)]


def test_parquet_columns_are_read_one_at_a_time_as_converted(tmp_path, monkeypatch):
    from engine.data import events as events_module

    path = write_parquet(tmp_path / "log.parquet", {**log_columns(), "unused": [1, 2, 3]})
    reads = []
    real = events_module._read_parquet
    monkeypatch.setattr(events_module, "_read_parquet", lambda f, cols, dicts: reads.append(cols) or real(f, cols, dicts))
    events = read(path)
    assert reads == [[c] for c in ("customer_id", "ts", "event_type", "item_id", "category", "channel",
                                   "amount", "quantity")]  # each once, in the order _canonical converts them
    assert events["customer_id"].type == pa.dictionary(pa.int32(), pa.string())  # strings read as dictionaries


def test_directory_and_glob_concatenate_files_in_name_order(tmp_path):
    columns = log_columns()
    first = {k: v[:2] for k, v in columns.items()}
    second = {k: v[2:] for k, v in columns.items()}
    write_parquet(tmp_path / "log" / "part-0.parquet", first)
    write_parquet(tmp_path / "log" / "part-1.parquet", second)
    (tmp_path / "log" / "notes.txt").write_text("not an event log")
    whole = read(write_parquet(tmp_path / "whole.parquet", columns))
    for path in [tmp_path / "log", tmp_path / "log" / "part-*.parquet"]:
        events, report = read_events(EventLogSpec(path=str(path)))
        assert [Path(f).name for f in report.files] == ["part-0.parquet", "part-1.parquet"]
        assert events.to_pylist() == whole.to_pylist()


def test_directory_mixes_parquet_and_csv(tmp_path):
    write_csv(tmp_path / "log" / "a.csv", LOG_CSV)
    write_parquet(tmp_path / "log" / "b.parquet", log_columns())
    events, report = read_events(EventLogSpec(path=str(tmp_path / "log")))
    assert report.rows_read == 6
    assert events["ts"].to_pylist() == [T0 + 10, T0, T0 + 20] * 2


def test_renamed_columns(tmp_path):
    path = write_csv(tmp_path / "shop.csv", """
        user_id,time,action,price,sku
        u1,2024-03-01,order,10,s1
        u2,2024-03-02,visit,,s2
    """)
    columns = Columns(customer_id="user_id", ts="time", event_type="action", amount="price", item_id="sku")
    store, _ = load_store(EventLogSpec(path=str(path), columns=columns, purchase_types=["order"]))
    assert store.customer_ids.to_pylist() == ["u1", "u2"]
    assert store.vocabs["item_id"][1:] == ["s1", "s2"]
    assert store.is_purchase().tolist() == [True, False]
    assert np.isnan(store.columns["amount"][1])


def test_csv_ids_stay_strings(tmp_path):
    path = write_csv(tmp_path / "log.csv", """
        customer_id,ts,event_type,item_id
        0042,2024-03-01,view,007
        42,2024-03-01,view,7
    """)
    events = read(path)
    assert events["customer_id"].to_pylist() == ["0042", "42"]
    assert events["item_id"].to_pylist() == ["007", "7"]


# -- timestamps ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, expected",
    [
        (["2024-03-01T00:00:05Z", "2024-03-01T02:00:00+02:00"], [T0 + 5, T0]),  # zoned
        (["2024-03-01T00:00:05", "2024-03-01 01:00:00"], [T0 + 5, T0 + 3600]),  # naive: UTC
        (["2024-03-01T00:00:05.750Z", "2024-03-01T00:00:00.5"], [T0 + 5, T0]),  # fractional seconds
        (["2024-03-01", "2024-03-02"], [T0, T0 + 86400]),  # date only
        (["2024-03-01T00:00:05Z", "2024-03-01T00:00:07"], [T0 + 5, T0 + 7]),  # zoned and naive mixed
        ([T0, T0 + 60], [T0, T0 + 60]),  # epoch seconds
        ([T0 * 1000 + 999, (T0 + 60) * 1000], [T0, T0 + 60]),  # epoch milliseconds
        ([float(T0), T0 + 0.5], [T0, T0]),  # epoch seconds as floats
    ],
)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_timestamp_forms(tmp_path, fmt, values, expected):
    if fmt == "parquet":
        path = write_parquet(tmp_path / "log.parquet", {"customer_id": ["a", "b"], "ts": values,
                                                        "event_type": ["view", "view"]})
    else:
        rows = "\n".join(f"{c},{v},view" for c, v in zip("ab", values, strict=True))
        path = write_csv(tmp_path / "log.csv", f"customer_id,ts,event_type\n{rows}")
    assert read(path)["ts"].to_pylist() == expected


@pytest.mark.parametrize("unit, tz", [("s", "UTC"), ("ms", "UTC"), ("us", "Europe/Paris"), ("ns", None)])
def test_native_parquet_timestamps(tmp_path, unit, tz):
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    ts = pa.array([T0 * per_second, (T0 + 90) * per_second], pa.timestamp(unit, tz=tz))
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": ["a", "b"], "ts": ts, "event_type": ["v", "v"]})
    assert read(path)["ts"].to_pylist() == [T0, T0 + 90]


def test_native_parquet_dates(tmp_path):
    dates = pa.array([T0 // 86400, T0 // 86400 + 1], pa.int32()).cast(pa.date32())
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": ["a", "b"], "ts": dates, "event_type": ["v", "v"]})
    assert read(path)["ts"].to_pylist() == [T0, T0 + 86400]


# -- optional columns --------------------------------------------------------------------------------------
def test_optional_columns_may_be_absent(tmp_path):
    path = write_csv(tmp_path / "log.csv", "customer_id,ts,event_type\na,2024-03-01,view\n")
    store, _ = load_store(EventLogSpec(path=str(path)))
    for name in ("item_id", "category", "channel"):
        assert store.vocabs[name] == ["<unk>"] and store.columns[name].tolist() == [0]
    assert np.isnan(store.columns["amount"]).all() and np.isnan(store.columns["quantity"]).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_optional_columns_null_in_some_or_all_rows_are_unknown(tmp_path, fmt):
    if fmt == "parquet":
        path = write_parquet(tmp_path / "log.parquet", {
            "customer_id": ["a", "a", "b"], "ts": [T0, T0 + 1, T0 + 2], "event_type": ["view", "purchase", "view"],
            "item_id": ["i1", None, "i1"], "category": pa.nulls(3, pa.string()), "amount": [None, 3.5, None],
            "quantity": pa.nulls(3, pa.int64()), "channel": pa.nulls(3),
        })
    else:
        path = write_csv(tmp_path / "log.csv", f"""
            customer_id,ts,event_type,item_id,category,amount,quantity,channel
            a,{T0},view,i1,,,,
            a,{T0 + 1},purchase,,,3.5,,
            b,{T0 + 2},view,i1,,,,
        """)
    store, _ = load_store(EventLogSpec(path=str(path)))
    assert store.columns["item_id"].tolist() == [1, 0, 1]
    assert store.columns["category"].tolist() == [0, 0, 0] and store.columns["channel"].tolist() == [0, 0, 0]
    assert np.isnan(store.columns["amount"][[0, 2]]).all() and store.columns["amount"][1] == 3.5
    assert np.isnan(store.columns["quantity"]).all()


# -- bad input: the error names the file, the column, the rows and what was expected --------------------------
def test_missing_required_column(tmp_path):
    path = write_csv(tmp_path / "log.csv", "customer_id,when,event_type\na,2024-03-01,view\n")
    message = error(path)
    assert message.startswith(f"{path}: missing required column(s) ['ts']")
    assert "found ['customer_id', 'when', 'event_type']" in message and "data.columns.<field>" in message


def test_missing_renamed_column_is_named_as_the_user_named_it(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", log_columns())
    message = error(path, columns=Columns(customer_id="user_id"))
    assert f"{path}: missing required column(s) ['user_id']" in message


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_unparseable_timestamp(tmp_path, fmt):
    values = ["2024-03-01", "2024-03-02", "2024-13-01", "2024-03-04", "yesterday"]
    if fmt == "parquet":
        path = write_parquet(tmp_path / "log.parquet", {"customer_id": list("abcde"), "ts": values,
                                                        "event_type": ["view"] * 5})
    else:
        rows = "\n".join(f"{c},{v},view" for c, v in zip("abcde", values, strict=True))
        path = write_csv(tmp_path / "log.csv", f"customer_id,ts,event_type\n{rows}")
    message = error(path)
    assert message.startswith(f"{path}: column 'ts': cannot parse as a timestamp")
    assert "row 2: '2024-13-01', row 4: 'yesterday'" in message and "expected ISO 8601" in message


def test_non_numeric_amount_in_csv(tmp_path):
    path = write_csv(tmp_path / "log.csv", """
        customer_id,ts,event_type,amount
        a,2024-03-01,purchase,10.5
        b,2024-03-01,purchase,ten
        c,2024-03-01,purchase,
        d,2024-03-01,purchase,1e3
    """)
    message = error(path)
    assert message == (f"{path}: column 'amount': not a number (row 1: 'ten'; "
                       f"expected a numeric value or empty)")


def test_negative_amount_on_a_non_return_event(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": list("abcd"), "ts": [T0] * 4, "event_type": ["purchase", "return", "view", "purchase"],
        "amount": [-1.0, -5.0, 2.0, -3.0],
    })
    message = error(path)
    assert message.startswith(f"{path}: column 'amount': negative amount on a non-return event in rows 0, 3")
    assert "data.return_types=['return']" in message


def test_negative_amount_allowed_on_the_users_return_types(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": ["a", "a"], "ts": [T0, T0 + 1], "event_type": ["order", "refund"], "amount": [5.0, -5.0],
    })
    store, _ = load_store(EventLogSpec(path=str(path), purchase_types=["order"], return_types=["refund"]))
    assert store.is_return().tolist() == [False, True]
    message = error(path)  # with the default return types, a refund is not a return
    assert "negative amount on a non-return event in row 1 " in message and "['return']" in message


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_empty_log(tmp_path, fmt):
    if fmt == "parquet":
        empty = {"customer_id": pa.array([], pa.string()), "ts": pa.array([], pa.int64()),
                 "event_type": pa.array([], pa.string())}
        path = write_parquet(tmp_path / "log.parquet", empty)
    else:
        path = write_csv(tmp_path / "log.csv", "customer_id,ts,event_type")
    assert error(path) == f"{path}: the event log is empty (no rows with a customer and a timestamp)"


def test_directory_without_logs_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no events here")
    assert error(tmp_path / "empty") == f"{tmp_path / 'empty'}: matched no .parquet or .csv files"
    assert error(tmp_path / "nothing-*.csv") == f"{tmp_path / 'nothing-*.csv'}: matched no .parquet or .csv files"
    assert error(tmp_path / "missing.parquet").startswith(f"{tmp_path / 'missing.parquet'}: no such file or directory")


def test_unreadable_file(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_text("customer_id,ts\n")
    assert error(path).startswith(f"{path}: cannot read as Parquet")


# -- rows with a null customer or timestamp ---------------------------------------------------------------------
NULLS_CSV = """
    customer_id,ts,event_type
    a,2024-03-01,view
    ,2024-03-01,view
    b,,view
    ,,view
    c,2024-03-02,view
"""


def test_null_customer_fails_by_default(tmp_path):
    path = write_csv(tmp_path / "log.csv", NULLS_CSV)
    assert error(path) == (f"{path}: column 'customer_id': null in rows 1, 3 "
                           f"(set data.on_bad_rows=drop to drop and count such rows)")


def test_null_ts_fails_naming_the_users_column(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": ["a", "b"], "when": [T0, None],
                                                    "event_type": ["v", "v"]})
    assert error(path, columns=Columns(ts="when")).startswith(f"{path}: column 'when': null in row 1 ")


def test_bad_rows_dropped_and_counted(tmp_path):
    path = write_csv(tmp_path / "log.csv", NULLS_CSV)
    store, report = load_store(EventLogSpec(path=str(path), on_bad_rows="drop"))
    assert store.customer_ids.to_pylist() == ["a", "c"]
    assert (report.rows_read, report.dropped_null_customer, report.dropped_null_ts) == (5, 2, 1)
    assert "dropped 2 with null customer_id, 1 with null ts" in report.summary()


def test_dropped_rows_are_not_checked_and_row_numbers_stay_those_of_the_file(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": [None, "a", "b"], "ts": [T0, T0, T0], "event_type": ["view"] * 3, "amount": [-1.0, 1.0, -2.0],
    })
    message = error(path, on_bad_rows="drop")
    assert "negative amount on a non-return event in row 2 " in message


def test_on_bad_rows_must_be_drop_or_fail(tmp_path):
    path = write_csv(tmp_path / "log.csv", LOG_CSV)
    assert error(path, on_bad_rows="skip") == "data.on_bad_rows='skip': expected 'drop' or 'fail'"


# -- values no log should hold: absurd numbers, blank ids and types, timestamps out of range ------------------
@pytest.mark.parametrize("name", ["amount", "quantity"])
@pytest.mark.parametrize("bad_value", [float("inf"), float("-inf"), 2e12])
def test_infinite_or_absurd_numbers(tmp_path, name, bad_value):
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": list("abc"), "ts": [T0] * 3, "event_type": ["purchase"] * 3, name: [1.0, bad_value, None],
    })
    assert error(path) == (f"{path}: column '{name}': infinite or absurd value (|{name}| > 1e+12) in row 1 "
                           f"(expected a finite {name}, or empty for unknown)")


def test_inf_text_in_csv_is_absurd_and_nan_text_is_unknown(tmp_path):
    path = write_csv(tmp_path / "log.csv", """
        customer_id,ts,event_type,amount
        a,2024-03-01,purchase,nan
        b,2024-03-01,purchase,inf
        c,2024-03-01,purchase,
    """)
    assert error(path).startswith(f"{path}: column 'amount': infinite or absurd value (|amount| > 1e+12) in row 1 ")


def test_negative_quantity_on_a_purchase(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": list("abcd"), "ts": [T0] * 4, "event_type": ["purchase", "return", "view", "purchase"],
        "quantity": [-1.0, -2.0, 1.0, -3.0],
    })
    assert error(path) == (f"{path}: column 'quantity': negative quantity on a purchase event in rows 0, 3 "
                           f"(expected quantity >= 0 when event_type is one of data.purchase_types=['purchase']; "
                           f"returns may be negative)")
    ok = write_parquet(tmp_path / "ok.parquet", {"customer_id": ["a", "a"], "ts": [T0, T0 + 1],
                                                 "event_type": ["return", "return"], "quantity": [-1.0, 2.0]})
    assert read(ok)["quantity"].to_pylist() == [-1.0, 2.0]  # a return may be either sign


BLANKS_CSV = """
    customer_id,ts,event_type
    a,2024-03-01,view
    ,2024-03-01,view
    "  ",2024-03-01,view
    b,2024-03-01,
    c,2024-03-01," "
    d,2024-03-02,view
"""


def test_empty_customer_or_event_type_fails_naming_the_rows(tmp_path):
    path = write_csv(tmp_path / "log.csv", BLANKS_CSV)
    assert error(path) == (f"{path}: column 'customer_id': null or empty in rows 1, 2 "
                           f"(set data.on_bad_rows=drop to drop and count such rows)")
    only_types = write_parquet(tmp_path / "types.parquet", {"customer_id": list("abc"), "ts": [T0] * 3,
                                                            "event_type": ["view", "", None]})
    assert error(only_types).startswith(f"{only_types}: column 'event_type': null or empty in rows 1, 2 ")
    only_empty = write_parquet(tmp_path / "empty.parquet", {"customer_id": ["a", " "], "ts": [T0] * 2,
                                                            "event_type": ["view"] * 2})
    assert error(only_empty).startswith(f"{only_empty}: column 'customer_id': empty in row 1 ")


def test_empty_customer_or_event_type_dropped_and_counted(tmp_path):
    path = write_csv(tmp_path / "log.csv", BLANKS_CSV)
    store, report = load_store(EventLogSpec(path=str(path), on_bad_rows="drop"))
    assert store.customer_ids.to_pylist() == ["a", "d"]
    assert (report.dropped_null_customer, report.dropped_null_event_type) == (2, 2)
    assert "2 with null event_type" in report.summary()


def test_timestamps_out_of_range_fail_naming_rows_and_range(tmp_path):
    ahead = int(time.time()) + 3 * 86400
    path = write_parquet(tmp_path / "log.parquet", {
        "customer_id": list("abcd"), "ts": [T0, 86400, ahead, 631_152_000], "event_type": ["view"] * 4,
    })
    message = error(path)
    assert message.startswith(f"{path}: column 'ts': out of range in rows 1, 2 (expected between 1990-01-01 and ")
    assert "UTC, a day past now; set data.on_bad_rows=drop" in message


def test_timestamps_out_of_range_dropped_and_counted(tmp_path):
    path = write_csv(tmp_path / "log.csv", """
        customer_id,ts,event_type
        a,2024-03-01,view
        b,1970-01-02,view
        ,1970-01-02,view
        c,,view
        d,2999-01-01,view
    """)
    store, report = load_store(EventLogSpec(path=str(path), on_bad_rows="drop"))
    assert store.customer_ids.to_pylist() == ["a"]
    assert (report.dropped_null_customer, report.dropped_null_ts, report.dropped_bad_ts) == (1, 1, 2)
    assert "2 with ts out of range" in report.summary()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_epoch_unit_is_decided_per_value(tmp_path, fmt):
    values = [T0, T0 + 60, (T0 + 5) * 1000 + 250]  # seconds, and one value in milliseconds
    if fmt == "parquet":
        path = write_parquet(tmp_path / "log.parquet", {"customer_id": list("abc"), "ts": values,
                                                        "event_type": ["view"] * 3})
    else:
        rows = "\n".join(f"{c},{v},view" for c, v in zip("abc", values, strict=True))
        path = write_csv(tmp_path / "log.csv", f"customer_id,ts,event_type\n{rows}")
    assert read(path)["ts"].to_pylist() == [T0, T0 + 60, T0 + 5]


def test_customer_ids_no_request_could_name_are_bad_rows(tmp_path):
    """An id with a newline or of more than 1,024 characters could never be looked up, erased or used as a
    seed: a bad row, named (fail) or counted (drop)."""
    path = tmp_path / "log.parquet"
    ids = ["ok", "a\nb", "x" * 2000, "tab\there", "ok"]
    pq.write_table(pa.table({"customer_id": ids, "ts": [T0 + i for i in range(5)], "event_type": ["view"] * 5}), path)
    with pytest.raises(EventLogError, match=r"column 'customer_id': longer than 1024 characters or with a control "
                                            r"character .* rows 1, 2, 3"):
        load_store(EventLogSpec(path=str(path)))
    store, report = load_store(EventLogSpec(path=str(path), on_bad_rows="drop"))
    assert store.customer_ids.to_pylist() == ["ok"] and report.dropped_bad_customer == 3
    assert "3 with an unaddressable customer_id" in report.summary()


# -- numeric timestamps that are no time, and ids of mixed types across files -----------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_timestamp_that_is_not_a_number_is_a_bad_row(tmp_path, value):
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": list("abc"), "ts": [float(T0), value, T0 + 1.0],
                                                    "event_type": ["view"] * 3})
    assert error(path) == (f"{path}: column 'ts': not a finite number (NaN or infinite) in row 1 (expected epoch "
                           f"seconds or milliseconds; set data.on_bad_rows=drop to drop and count such rows)")
    store, report = load_store(EventLogSpec(path=str(path), on_bad_rows="drop"))
    assert store.customer_ids.to_pylist() == ["a", "c"] and report.dropped_bad_ts == 1
    assert report.quality.to_dict()["total"]["dropped"]["ts_not_finite"] == 1


def test_csv_inf_timestamp_is_a_bad_row_and_an_absurd_number_out_of_range(tmp_path):
    path = write_csv(tmp_path / "log.csv", f"customer_id,ts,event_type\na,{T0},view\nb,inf,view\nc,1e300,view\n")
    assert error(path).startswith(f"{path}: column 'ts': not a finite number (NaN or infinite) in row 1 ")
    huge = write_parquet(tmp_path / "huge.parquet", {"customer_id": ["a", "b"], "ts": [float(T0), 1e300],
                                                     "event_type": ["view"] * 2})
    assert error(huge).startswith(f"{huge}: column 'ts': out of range in row 1 (expected between 1990-01-01 and ")


def test_a_float_column_mixing_epoch_seconds_and_milliseconds_is_read_per_value(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": list("abc"),
                                                    "ts": [float(T0), (T0 + 5) * 1000.0 + 250, T0 + 60.5],
                                                    "event_type": ["view"] * 3})
    assert read(path)["ts"].to_pylist() == [T0, T0 + 5, T0 + 60]


def test_the_earliest_year_is_configurable(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", {"customer_id": ["a", "b"], "ts": [T0, 820_454_400],  # 1996
                                                    "event_type": ["view"] * 2})
    assert read(path)["ts"].to_pylist() == [T0, 820_454_400]
    assert error(path, min_year=2000).startswith(f"{path}: column 'ts': out of range in row 1 (expected between "
                                                 "2000-01-01 and ")
    assert error(path, min_year=0) == f"data.min_year=0: expected a year between 1 and {time.gmtime().tm_year}"


@pytest.mark.parametrize("name, first, second, shown", [
    ("customer_id", [1, 2], ["1", "x"], ("int64", "string")),
    ("item_id", [7, 8], [7.0, 8.5], ("int64", "double")),
])
def test_id_columns_of_mixed_types_across_files_are_rejected(tmp_path, name, first, second, shown):
    base = {"customer_id": ["a", "b"], "ts": [T0, T0 + 1], "event_type": ["view"] * 2}
    a = write_parquet(tmp_path / "log" / "a.parquet", {**base, name: first})
    b = write_parquet(tmp_path / "log" / "b.parquet", {**base, name: second})
    assert error(tmp_path / "log") == (
        f"{b}: column '{name}' holds {shown[1]} ids but {a} holds {shown[0]} ids: the same id would be two "
        f"different ones (7 and '7'); write {name} with one type in every file (e.g. as strings)")


def test_integer_ids_in_parquet_and_text_ids_in_csv_are_rejected_naming_both(tmp_path):
    a = write_csv(tmp_path / "log" / "a.csv", f"user,ts,event_type\n7,{T0},view\n")
    b = write_parquet(tmp_path / "log" / "b.parquet", {"user": [7], "ts": [T0], "event_type": ["view"]})
    assert error(tmp_path / "log", columns=Columns(customer_id="user")).startswith(
        f"{b}: column 'user' (customer_id) holds int64 ids but {a} holds text (CSV) ids: ")
    same = write_parquet(tmp_path / "same" / "a.parquet", {"customer_id": pa.array([7], pa.int32()), "ts": [T0],
                                                           "event_type": ["view"]})
    write_parquet(tmp_path / "same" / "b.parquet", {"customer_id": [8], "ts": [T0], "event_type": ["view"]})
    assert read(same.parent)["customer_id"].to_pylist() == ["7", "8"]  # int32 and int64: both integers


def test_a_column_mapped_to_two_fields_is_rejected(tmp_path):
    path = write_parquet(tmp_path / "log.parquet", log_columns())
    assert error(path, columns=Columns(event_type="channel")) == (
        "data.columns maps the column 'channel' to event_type and channel; each field needs a column of its own "
        "(set one of them to another column)")
