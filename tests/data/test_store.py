"""The packed sequence store: order, offsets, vocabularies, duplicates, save/open, slicing, CSV == Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from engine.data import EventLogSpec, SequenceStore, build_store, load_store
from engine.data.sort import sort_events

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z


def events_table(rows: list[tuple]) -> pa.Table:
    """rows: (customer_id, ts seconds, event_type, item_id, amount) -> a Parquet-ready table."""
    customer, ts, event_type, item, amount = (list(c) for c in zip(*rows, strict=True))
    return pa.table({"customer_id": customer, "ts": pa.array(ts, pa.int64()), "event_type": event_type,
                     "item_id": item, "amount": pa.array(amount, pa.float64())})


def store_of(tmp_path: Path, rows: list[tuple], **spec) -> tuple[SequenceStore, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "log.parquet"
    pq.write_table(events_table(rows), path)
    return load_store(EventLogSpec(path=str(path), **spec))


def tokens(store: SequenceStore, name: str) -> list[str]:
    """The column decoded back to tokens, in store order."""
    return [store.vocabs[name][i] for i in store.columns[name]]


# customers b and a interleaved in the log; b has two events at the same second (kept in log order)
LOG = [
    ("b", T0 + 50, "view", "i2", 2.0),
    ("a", T0 + 30, "view", "i1", 1.0),
    ("b", T0 + 10, "cart", "i2", 2.0),
    ("a", T0 + 20, "purchase", "i1", 5.0),
    ("b", T0 + 10, "view", "i3", 3.0),
    ("c", T0 + 40, "view", "i1", None),
]


# -- order, offsets, customers --------------------------------------------------------------------------------
def test_sorted_by_customer_then_time_ties_in_log_order(tmp_path):
    store, _ = store_of(tmp_path, LOG)
    assert store.customer_ids.to_pylist() == ["a", "b", "c"]
    assert store.offsets.tolist() == [0, 2, 5, 6]
    assert store.lengths().tolist() == [2, 3, 1]
    assert (store.columns["ts"] - T0).tolist() == [20, 30, 10, 10, 50, 40]
    assert tokens(store, "event_type") == ["purchase", "view", "cart", "view", "view", "view"]
    assert tokens(store, "item_id") == ["i1", "i1", "i2", "i3", "i2", "i1"]
    assert store.customer_rows().tolist() == [0, 0, 1, 1, 1, 2]
    assert store.n_events == 6 and store.n_customers == 3


def test_customer_index(tmp_path):
    store, _ = store_of(tmp_path, LOG)
    assert store.customer_index(["c", "a", "zz"]).tolist() == [2, 0, -1]


def test_purchases_and_returns(tmp_path):
    rows = [("a", T0, "buy", "i1", 5.0), ("a", T0 + 1, "refund", "i1", -5.0), ("a", T0 + 2, "view", "i1", 5.0)]
    store, _ = store_of(tmp_path, rows, purchase_types=["buy"], return_types=["refund"])
    assert store.is_purchase().tolist() == [True, False, False]
    assert store.is_return().tolist() == [False, True, False]


@pytest.mark.parametrize("seed", [0, 1])
def test_sort_events_matches_lexsort(seed):
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, 50, 5000)
    ts = rng.integers(0, 100, 5000)
    expected = np.lexsort((ts, customer))  # stable
    assert np.array_equal(sort_events(customer, ts), expected)
    assert np.array_equal(sort_events(customer.astype(np.int32), np.sort(ts)), np.argsort(customer, kind="stable"))
    wide = ts * 10**17  # too wide to pack customer and time into one key
    assert np.array_equal(sort_events(customer, wide), np.lexsort((wide, customer)))


# -- vocabularies ---------------------------------------------------------------------------------------------
FREQ = [("a", T0 + k, "view", item, 1.0) for k, item in enumerate(["x", "y", "y", "z", "z", "w", None])]


def test_vocab_by_frequency_ties_by_token_unknown_is_zero(tmp_path):
    store, _ = store_of(tmp_path, FREQ)
    assert store.vocabs["item_id"] == ["<unk>", "y", "z", "w", "x"]
    assert store.columns["item_id"].tolist() == [4, 1, 1, 2, 2, 3, 0]  # null -> 0


def test_min_count_maps_rare_tokens_to_unknown_but_never_event_types(tmp_path):
    rows = FREQ + [("a", T0 + 100, "rare_type", "y", 1.0)]
    store, _ = store_of(tmp_path, rows)
    packed, _ = load_store(EventLogSpec(path=str(tmp_path / "log.parquet")), min_count=2)
    assert packed.vocabs["item_id"] == ["<unk>", "y", "z"]
    assert packed.columns["item_id"].tolist() == [0, 1, 1, 2, 2, 0, 0, 1]
    assert packed.vocabs["event_type"] == store.vocabs["event_type"] == ["<unk>", "view", "rare_type"]


def test_given_vocabs_are_reused_and_unseen_tokens_map_to_unknown(tmp_path):
    trained, _ = store_of(tmp_path / "old", FREQ)
    new_rows = [("n", T0, "view", "z", 1.0), ("n", T0 + 1, "cart", "new_item", 1.0), ("n", T0 + 2, "view", "x", 1.0)]
    store, _ = store_of(tmp_path / "new", new_rows)
    reused, _ = load_store(EventLogSpec(path=str(tmp_path / "new" / "log.parquet")), vocabs=trained.vocabs)
    assert reused.vocabs == trained.vocabs
    assert reused.columns["item_id"].tolist() == [2, 0, 4]
    assert reused.columns["event_type"].tolist() == [1, 0, 1]  # "cart" was never seen in training
    assert store.vocabs["item_id"] != trained.vocabs["item_id"]


# -- duplicates -------------------------------------------------------------------------------------------
DUPLICATES = [
    ("a", T0 + 5, "view", "i1", 1.0),
    ("b", T0 + 5, "view", "i1", 1.0),  # same event, another customer: kept
    ("a", T0 + 5, "view", "i2", 1.0),  # same second, another item: kept
    ("a", T0 + 9, "view", "i1", None),
    ("a", T0 + 5, "view", "i1", 1.0),  # duplicate of row 0, not adjacent in the log
    ("a", T0 + 5, "cart", "i1", 1.0),  # same second, another event type: kept
    ("a", T0 + 9, "view", "i1", None),  # duplicate of row 3 (unknown amount equals unknown amount)
    ("a", T0 + 5, "view", "i1", 1.5),  # same second, another amount: kept
]


def test_exact_duplicates_removed_and_counted(tmp_path):
    store, report = store_of(tmp_path, DUPLICATES)
    assert report.duplicates_removed == 2 and "removed 2 duplicates" in report.summary()
    assert store.lengths().tolist() == [5, 1]
    assert tokens(store, "event_type")[:4] == ["view", "view", "cart", "view"]
    assert tokens(store, "item_id")[:4] == ["i1", "i2", "i1", "i1"]
    assert store.columns["amount"][:4].tolist() == [1.0, 1.0, 1.0, 1.5]
    assert store.columns["ts"][4] == T0 + 9


def test_dedupe_false_keeps_duplicates(tmp_path):
    store, report = store_of(tmp_path, DUPLICATES, dedupe=False)
    assert report.duplicates_removed == 0 and store.n_events == len(DUPLICATES)


def test_duplicates_across_files_are_removed(tmp_path):
    for part, rows in enumerate([DUPLICATES[:4], DUPLICATES[4:]]):
        (tmp_path / "log").mkdir(exist_ok=True)
        pq.write_table(events_table(rows), tmp_path / "log" / f"part-{part}.parquet")
    store, report = load_store(EventLogSpec(path=str(tmp_path / "log")))
    assert report.duplicates_removed == 2 and store.n_events == 6


# -- save and open ----------------------------------------------------------------------------------------------
def assert_same_store(a: SequenceStore, b: SequenceStore) -> None:
    assert a.customer_ids.to_pylist() == b.customer_ids.to_pylist()
    assert np.array_equal(a.offsets, b.offsets)
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        assert a.columns[name].dtype == b.columns[name].dtype, name
        assert np.array_equal(a.columns[name], b.columns[name], equal_nan=a.columns[name].dtype.kind == "f"), name
    assert a.vocabs == b.vocabs
    assert (a.purchase_types, a.return_types) == (b.purchase_types, b.return_types)


def test_save_and_open_round_trip_memory_mapped(tmp_path):
    store, _ = store_of(tmp_path, LOG, purchase_types=["purchase", "cart"])
    saved = store.save(tmp_path / "store")
    opened = SequenceStore.open(saved)
    assert_same_store(store, opened)
    assert all(isinstance(v, np.memmap) for v in opened.columns.values())
    in_memory = SequenceStore.open(saved, mmap=False)
    assert not any(isinstance(v, np.memmap) for v in in_memory.columns.values())
    assert opened.is_purchase().tolist() == store.is_purchase().tolist()


def test_save_replaces_an_existing_store(tmp_path):
    store, _ = store_of(tmp_path, LOG)
    store.save(tmp_path / "store")
    store.take(np.array([2])).save(tmp_path / "store")
    assert SequenceStore.open(tmp_path / "store").customer_ids.to_pylist() == ["c"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_open_a_directory_that_is_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sequence store"):
        SequenceStore.open(tmp_path)


# -- slicing -------------------------------------------------------------------------------------------------
def test_take_rows_in_the_given_order(tmp_path):
    store, _ = store_of(tmp_path, LOG)
    taken = store.take(np.array([2, 0]))
    assert taken.customer_ids.to_pylist() == ["c", "a"]
    assert taken.offsets.tolist() == [0, 1, 3]
    assert (taken.columns["ts"] - T0).tolist() == [40, 20, 30]
    assert taken.vocabs is store.vocabs


def test_before_and_after_a_cutoff_are_aligned_and_make_the_whole(tmp_path):
    store, _ = store_of(tmp_path, LOG)
    cutoff = T0 + 25
    before, after = store.before(cutoff), store.after(cutoff)
    assert before.customer_ids.to_pylist() == after.customer_ids.to_pylist() == ["a", "b", "c"]
    assert before.lengths().tolist() == [1, 2, 0] and after.lengths().tolist() == [1, 1, 1]
    assert (before.columns["ts"] < cutoff).all() and (after.columns["ts"] >= cutoff).all()
    # per customer, history then future is the customer's whole sequence
    for row in range(store.n_customers):
        whole = store.columns["ts"][store.offsets[row] : store.offsets[row + 1]]
        parts = [s.columns["ts"][s.offsets[row] : s.offsets[row + 1]] for s in (before, after)]
        assert np.array_equal(np.concatenate(parts), whole)
    window = store.after(cutoff, until=T0 + 45)
    assert window.lengths().tolist() == [1, 0, 1]
    assert store.non_empty().n_customers == 3 and before.non_empty().customer_ids.to_pylist() == ["a", "b"]


# -- the same log in other shapes gives the same store -----------------------------------------------------
def rich_log() -> pa.Table:
    """A few customers with every column, nulls in the optional ones, ties and a duplicate."""
    rng = np.random.default_rng(3)
    n = 300
    return pa.table({
        "customer_id": [f"c{k:02d}" for k in rng.integers(0, 25, n)],
        "ts": pa.array(T0 + rng.integers(0, 5000, n) * 60, pa.timestamp("s", tz="UTC")),
        "event_type": rng.choice(["view", "cart", "purchase"], n).tolist(),
        "item_id": [None if k == 0 else f"i{k}" for k in rng.integers(0, 12, n)],
        "category": rng.choice(["food", "toys"], n).tolist(),
        "amount": [None if k == 0 else round(float(k) * 1.25, 2) for k in rng.integers(0, 9, n)],
        "quantity": rng.integers(1, 4, n),
        "channel": rng.choice(["web", "app"], n).tolist(),
    })


def test_csv_and_parquet_give_identical_stores(tmp_path):
    table = rich_log()
    pq.write_table(table, tmp_path / "log.parquet")
    iso = table.set_column(1, "ts", pa.compute.strftime(table["ts"], format="%Y-%m-%dT%H:%M:%SZ"))
    pacsv.write_csv(iso, tmp_path / "log.csv")
    from_parquet, _ = load_store(EventLogSpec(path=str(tmp_path / "log.parquet")))
    from_csv, _ = load_store(EventLogSpec(path=str(tmp_path / "log.csv")))
    assert_same_store(from_parquet, from_csv)


def test_many_files_give_the_store_of_their_concatenation(tmp_path):
    table = rich_log()
    pq.write_table(table, tmp_path / "whole.parquet", row_group_size=64)  # several row groups
    for part, start in enumerate(range(0, table.num_rows, 100)):
        pq.write_table(table.slice(start, 100), tmp_path / f"part-{part}.parquet")
    whole, _ = load_store(EventLogSpec(path=str(tmp_path / "whole.parquet")))
    parts, report = load_store(EventLogSpec(path=str(tmp_path / "part-*.parquet")))
    assert len(report.files) == 3
    assert_same_store(whole, parts)


def test_build_store_from_plain_string_columns_equals_load_store(tmp_path):
    table = rich_log()
    pq.write_table(table, tmp_path / "log.parquet")
    loaded, _ = load_store(EventLogSpec(path=str(tmp_path / "log.parquet")))
    plain = table.set_column(1, "ts", table["ts"].cast(pa.int64()))
    plain = plain.set_column(6, "quantity", plain["quantity"].cast(pa.float64()))
    built, _ = build_store(plain, ["purchase"], ["return"])
    assert_same_store(loaded, built)
