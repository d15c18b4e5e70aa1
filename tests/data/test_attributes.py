"""Customer attributes: reading (ids as strings, dropped columns never read, every error naming its file,
column and rows), the encoder's matrix (unknown customers and values, report_only kept out, a JSON round trip),
segment descriptions against a hand count on the real Complete Journey demographics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from engine.data.attributes import AttributeEncoder, AttributesError, AttributeSpec, read_attributes

ROOT = Path(__file__).resolve().parents[2]
DEMOGRAPHICS = ROOT.parent / "shared" / "data" / "completejourney" / "demographics.parquet"
needs_demographics = pytest.mark.skipif(not DEMOGRAPHICS.exists(),
                                        reason="the Complete Journey demographics are not in ../shared/data")


def write_parquet(path: Path, columns: dict) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


def customers(tmp_path: Path) -> str:
    """Four customers: int ids, a numeric, a numeric-as-text, a categorical and a protected column, some null."""
    return write_parquet(tmp_path / "customers.parquet", {
        "id": pa.array([1001, 1002, 1003, 1004], pa.int64()),
        "income": pa.array([10.0, 20.0, None, 30.0]),
        "size": ["1", "2", "3", None],  # every value a number: numeric
        "kids": ["0", "1", "3+", "0"],  # "3+" is no number: categorical
        "region": ["north", "south", None, "north"],
        "gender": ["f", "m", "f", None],
    })


def test_int_ids_read_as_strings_and_other_columns_as_read(tmp_path):
    table = read_attributes(AttributeSpec(customers(tmp_path), id_column="id"))
    assert table.column_names == ["customer_id", "income", "size", "kids", "region", "gender"]
    assert table["customer_id"].type == pa.string()
    assert table["customer_id"].to_pylist() == ["1001", "1002", "1003", "1004"]
    assert table["income"].type == pa.float64() and table["size"].type == pa.string()


def test_whole_float_ids_become_integers_and_a_fraction_is_refused(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", {"customer_id": [7.0, 8.0], "x": [1, 2]})
    assert read_attributes(AttributeSpec(path))["customer_id"].to_pylist() == ["7", "8"]
    path = write_parquet(tmp_path / "b.parquet", {"customer_id": [7.0, 8.5], "x": [1, 2]})
    with pytest.raises(AttributesError, match=r"b\.parquet: column 'customer_id': 8\.5 in row 1 is not a whole"):
        read_attributes(AttributeSpec(path))


def test_encoder_kinds_names_and_unknowns(tmp_path):
    table = read_attributes(AttributeSpec(customers(tmp_path), id_column="id", report_only=["gender"]))
    encoder = AttributeEncoder.fit(table, report_only=["gender"], min_count=1)
    assert encoder.numeric == ["income", "size"] and encoder.categorical == ["kids", "region"]
    assert encoder.names == ["income", "income:missing", "size", "size:missing",
                             "kids=0", "kids=1", "kids=3+", "kids=other", "kids=unknown",
                             "region=north", "region=south", "region=other", "region=unknown"]
    assert not any(name.startswith("gender") for name in encoder.names)
    m = encoder.matrix(table, ["1003", "9999", "1001"])  # a null income, a customer with no row at all
    assert m.shape == (3, encoder.width) and m.dtype == np.float32
    col = {name: m[:, j] for j, name in enumerate(encoder.names)}
    assert col["income"].tolist() == [0.0, 0.0, pytest.approx((10 - 20) / np.std([10, 20, 30]))]
    assert col["income:missing"].tolist() == [1, 1, 0]
    assert col["size:missing"].tolist() == [0, 1, 0]
    assert col["region=unknown"].tolist() == [1, 1, 0] and col["region=north"].tolist() == [0, 0, 1]
    assert col["kids=unknown"].tolist() == [0, 1, 0] and col["kids=3+"].tolist() == [1, 0, 0]
    # each categorical column is one-hot on every row, known or not
    assert m[:, 4:9].sum(axis=1).tolist() == [1, 1, 1] and m[:, 9:].sum(axis=1).tolist() == [1, 1, 1]


def test_rare_and_unseen_values_are_other(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", {"customer_id": list("abcdef"), "tier": list("xxxyyz")})
    table = read_attributes(AttributeSpec(path))
    encoder = AttributeEncoder.fit(table, max_categories=2, min_count=1)
    assert encoder.vocab == {"tier": ["x", "y"]}
    served = pa.table({"customer_id": ["f", "g"], "tier": ["z", "new"]})  # z rare in training, new unseen
    m = encoder.matrix(served, ["f", "g", "a"])
    assert m.tolist() == [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_round_trip_through_json_gives_the_same_matrix(tmp_path):
    table = read_attributes(AttributeSpec(customers(tmp_path), id_column="id", report_only=["gender"]))
    encoder = AttributeEncoder.fit(table, report_only=["gender"], min_count=1)
    again = AttributeEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert again == encoder
    sub = AttributeEncoder.fit(table, ["gender"], customer_ids=["1001", "1002", "x"], min_count=1)  # kids "0", "1": numbers
    assert sub.numeric == ["income", "size", "kids"] and sub.means == [15.0, 1.5, 0.5]
    ids = np.array(["1004", "1001", "nobody", "1002", "1003"])
    assert np.array_equal(again.matrix(table, ids), encoder.matrix(table, ids))
    with pytest.raises(AttributesError, match=r"no column\(s\) \['region'\], which the model was trained with"):
        encoder.matrix(table.drop_columns(["region"]), ids)


def test_drop_columns_are_never_read(tmp_path, monkeypatch):
    asked = []  # the columns each reader was asked for
    read_table, read_csv = pq.read_table, pacsv.read_csv
    monkeypatch.setattr(pq, "read_table", lambda f, columns=None, **kw: asked.append(columns) or
                        read_table(f, columns=columns, **kw))
    monkeypatch.setattr(pacsv, "read_csv", lambda f, convert_options=None, **kw: asked.append(
        convert_options.include_columns) or read_csv(f, convert_options=convert_options, **kw))
    table = read_attributes(AttributeSpec(customers(tmp_path), id_column="id", drop=["gender", "kids"]))
    assert table.column_names == ["customer_id", "income", "size", "region"]
    path = tmp_path / "a.csv"  # 'note' holds bytes that are no UTF-8 text
    path.write_bytes(b"id,group,note\n1,a,\xff\xfe\n2,b,ok\n")
    table = read_attributes(AttributeSpec(str(path), id_column="id", drop=["note"]))
    assert table.column_names == ["customer_id", "group"] and table["group"].to_pylist() == ["a", "b"]
    assert asked == [["id", "income", "size", "region"], ["id", "group"]]


def test_csv_file(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("customer_id,age,region\n007,31,north\n8,,south\n9,45,\n")
    table = read_attributes(AttributeSpec(str(path)))
    assert table["customer_id"].to_pylist() == ["007", "8", "9"]  # CSV ids stay text
    encoder = AttributeEncoder.fit(table, min_count=1)
    assert encoder.numeric == ["age"] and encoder.categorical == ["region"]
    m = encoder.matrix(table, ["8", "9"])
    assert m[:, 1].tolist() == [1, 0] and m[:, encoder.names.index("region=unknown")].tolist() == [0, 1]


def test_all_null_column_is_unknown(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", {"customer_id": ["a", "b"], "x": pa.nulls(2, pa.string())})
    table = read_attributes(AttributeSpec(path))
    encoder = AttributeEncoder.fit(table, min_count=1)
    assert encoder.names == ["x=other", "x=unknown"]
    assert encoder.matrix(table, ["a", "z"]).tolist() == [[0, 1], [0, 1]]


@pytest.mark.parametrize(("columns", "spec", "message"), [
    ({"customer_id": ["a", "b", "c", "b"], "x": [1, 2, 3, 4]}, {},
     r"a\.parquet: column 'customer_id': id 'b' is in rows 1, 3 \(expected one row per customer\)"),
    ({"cust": [1, 2], "x": [1, 2]}, {},
     r"a\.parquet: no id column 'customer_id' \(found \['cust', 'x'\]; .*data\.attributes\.id_column="),
    ({"customer_id": ["a", "b"], "x": [1, 2]}, {"report_only": ["gender"]},
     r"a\.parquet: data\.attributes\.report_only names 'gender', which is not a column \(found \['customer_id', 'x'\]\)"),
    ({"customer_id": ["a", "b"], "x": [1, 2]}, {"drop": ["y"]},
     r"data\.attributes\.drop names 'y', which is not a column"),
    ({"customer_id": ["a", None, ""], "x": [1, 2, 3]}, {},
     r"column 'customer_id': id null or empty in rows 1, 2"),
    ({"customer_id": ["a", "b\nc"], "x": [1, 2]}, {},
     r"column 'customer_id': id longer than 1024 characters or with a control character in row 1"),
    ({"customer_id": ["a", "b" * 1025], "x": [1, 2]}, {}, r"longer than 1024 characters .* in row 1"),
])
def test_errors_name_the_file_column_and_rows(tmp_path, columns, spec, message):
    path = write_parquet(tmp_path / "a.parquet", columns)
    with pytest.raises(AttributesError, match=message):
        read_attributes(AttributeSpec(path, **spec))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(AttributesError, match=r"nope\.parquet: no such file"):
        read_attributes(AttributeSpec(str(tmp_path / "nope.parquet")))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(AttributesError, match=r"bad\.parquet: cannot read as Parquet"):
        read_attributes(AttributeSpec(str(tmp_path / "bad.parquet")))


def test_describe_keeps_report_only_columns_out_of_the_model_but_in_the_profile(tmp_path):
    table = read_attributes(AttributeSpec(customers(tmp_path), id_column="id", report_only=["gender"]))
    encoder = AttributeEncoder.fit(table, report_only=["gender"], min_count=1)
    ids = ["1001", "1002", "1003", "1004", "x", "y"]
    segments = encoder.describe(table, ids, np.array([0, 1, 0, 1, 0, 1]), k=2, min_count=1)
    assert [s["size"] for s in segments] == [3, 3] and [s["known_share"] for s in segments] == [0.6667, 0.6667]
    gender = segments[0]["columns"]["gender"]  # segment 0: 1001 f, 1003 f; base known: f, m, f
    assert gender == {"top": [{"value": "f", "share": 1.0, "lift": 1.5}], "known_share": 0.6667}
    assert segments[1]["columns"]["income"] == {"mean": 25.0, "base_mean": 20.0, "known_share": 0.6667}


@needs_demographics
def test_describe_on_the_demographics_matches_a_hand_count():
    spec = AttributeSpec(str(DEMOGRAPHICS), id_column="household_id", report_only=["marital_status"])
    table = read_attributes(spec)
    assert table.num_rows == 801 and table["customer_id"].type == pa.string()
    encoder = AttributeEncoder.fit(table, report_only=spec.report_only, max_categories=spec.max_categories)
    assert encoder.numeric == [] and "household_size" in encoder.categorical  # "5+" is no number
    assert "marital_status" not in encoder.categorical
    households = table["customer_id"].to_pylist()
    ids = households + [f"no-row-{i}" for i in range(400)]  # most of the event log's customers have no row
    labels = np.array([int(h) % 3 for h in households] + [i % 3 for i in range(400)])
    segments = encoder.describe(table, ids, labels, k=3)
    m = encoder.matrix(table, ids)
    assert m[801:, encoder.names.index("income=unknown")].all()
    assert not any(name.startswith("marital_status") for name in encoder.names)
    no_home = np.array([v is None for v in table["home_ownership"].to_pylist()] + [True] * 400)
    assert np.array_equal(m[:, encoder.names.index("home_ownership=unknown")] == 1, no_home)
    for column in ("income", "marital_status"):
        values = table[column].to_pylist()
        base = Counter(v for v in values if v is not None)
        for s in range(3):
            mine = Counter(v for v, h in zip(values, households, strict=True) if v is not None and int(h) % 3 == s)
            known = sum(mine.values())
            lifts = {v: (c / known) / (base[v] / sum(base.values())) for v, c in mine.items() if c >= 5}
            best = sorted(lifts, key=lambda v: (-lifts[v], -mine[v]))[:3]
            got = segments[s]["columns"][column]
            assert [t["value"] for t in got["top"]] == best
            assert [t["lift"] for t in got["top"]] == pytest.approx([lifts[v] for v in best], abs=1e-3)
            assert [t["share"] for t in got["top"]] == pytest.approx([mine[v] / known for v in best], abs=1e-4)
            assert got["known_share"] == pytest.approx(known / int((labels == s).sum()), abs=1e-4)


def test_a_value_of_fewer_than_five_customers_gets_no_column_of_its_own():
    table = pa.table({"customer_id": [str(i) for i in range(12)],
                      "region": ["north"] * 6 + ["south"] * 5 + ["x@example.com"]})
    encoder = AttributeEncoder.fit(table)
    assert encoder.vocab == {"region": ["north", "south"]}  # the one-customer value is "other", never named
    assert "x@example.com" not in json.dumps(encoder.to_dict())
    row = encoder.matrix(table, ["11"])[0]
    assert row[encoder.names.index("region=other")] == 1

