"""Item statistics, candidates and filters on small hand-made histories whose answers are known."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.data.store import SequenceStore
from engine.recommend.candidates import FEATURES, Filters, candidates, top_n
from engine.recommend.items import DAY, ItemStats, Purchases

T0 = 1_700_000_000


def store_of(histories: dict[str, list[tuple[int, str, str]]], categories: dict[str, str]) -> SequenceStore:
    """A store from {customer: [(day, event_type, item), ...]} (days after T0, in order)."""
    items = ["<unk>", *sorted({i for h in histories.values() for _, _, i in h})]
    cats = ["<unk>", *sorted(set(categories.values()))]
    item_id = {t: k for k, t in enumerate(items)}
    columns = {k: [] for k in ("ts", "event_type", "item_id", "category", "channel", "amount", "quantity")}
    offsets = [0]
    for history in histories.values():
        for day, kind, item in history:
            columns["ts"].append(T0 + day * DAY)
            columns["event_type"].append(1 if kind == "purchase" else 2)
            columns["item_id"].append(item_id[item])
            columns["category"].append(cats.index(categories[item]))
            columns["channel"].append(0)
            columns["amount"].append(1.0)
            columns["quantity"].append(1.0)
        offsets.append(len(columns["ts"]))
    arrays = {k: np.asarray(v, np.int64 if k == "ts" else np.float32 if k in ("amount", "quantity") else np.int32)
              for k, v in columns.items()}
    vocabs = {"event_type": ["<unk>", "purchase", "return"], "item_id": items, "category": cats, "channel": ["<unk>"]}
    return SequenceStore(pa.array(list(histories), pa.string()), np.asarray(offsets, np.int64), arrays, vocabs)


CATS = {"milk": "dairy", "butter": "dairy", "bread": "bakery", "jam": "bakery", "beer": "drinks", "wine": "drinks"}
HISTORIES = {
    "a": [(0, "purchase", "milk"), (7, "purchase", "milk"), (14, "purchase", "bread"), (20, "purchase", "beer"),
          (21, "return", "beer"), (27, "purchase", "milk")],
    "b": [(1, "purchase", "milk"), (2, "purchase", "butter"), (9, "purchase", "bread"), (10, "purchase", "jam")],
    "c": [(3, "purchase", "bread"), (4, "purchase", "jam"), (5, "purchase", "wine")],
    "d": [(6, "purchase", "milk"), (8, "purchase", "butter")],
}


@pytest.fixture(scope="module")
def store() -> SequenceStore:
    return store_of(HISTORIES, CATS)


def test_item_statistics_count_buyers_repeaters_and_cosine_cooccurrence(store):
    as_of = T0 + 28 * DAY
    stats = ItemStats.build(store, as_of)
    ids = {t: k for k, t in enumerate(store.vocabs["item_id"])}
    assert stats.buyers[ids["milk"]] == 3 and stats.repeat_buyers[ids["milk"]] == 1  # a bought it 3 times
    assert stats.buyers[ids["beer"]] == 1  # a return is not a purchase
    assert set(stats.popular(2).tolist()) == {ids["bread"], ids["milk"]}  # 3 buyers each
    # butter's buyers {b, d} and milk's {a, b, d}: cosine 2 / sqrt(2 * 3)
    row = stats.neighbours[ids["butter"]].tolist()
    assert row[0] == ids["milk"]
    assert stats.similarity[ids["butter"], 0] == pytest.approx(2 / np.sqrt(6), rel=1e-5)
    assert ids["butter"] not in stats.neighbours[ids["butter"]][stats.similarity[ids["butter"]] > 0]
    assert stats.category[ids["jam"]] == store.vocabs["category"].index("bakery")


def test_item_statistics_survive_a_save_and_load(store, tmp_path):
    stats = ItemStats.build(store, T0 + 28 * DAY)
    stats.save(tmp_path / "items")
    again = ItemStats.load(tmp_path / "items")
    assert again.as_of == stats.as_of and again.n_customers == 4
    assert np.array_equal(again.neighbours, stats.neighbours) and np.array_equal(again.buyers, stats.buyers)


def test_candidates_read_only_the_history_before_as_of(store):
    as_of = T0 + 15 * DAY  # before a's beer and third milk
    stats = ItemStats.build(store, as_of)
    c = candidates(Purchases.of(store), stats, as_of)
    ids = {t: k for k, t in enumerate(store.vocabs["item_id"])}
    f = {name: i for i, name in enumerate(FEATURES)}
    a = (c.row == 0)
    milk = a & (c.item == ids["milk"])
    assert np.expm1(c.features[milk, f["own_count"]]) == pytest.approx(2)
    assert np.expm1(c.features[milk, f["days_since"]]) == pytest.approx(8)  # bought on day 7
    assert not (a & (c.item == ids["beer"]) & (c.features[:, f["bought"]] > 0)).any()
    p = Purchases.of(store)
    assert p.returned.shape[1] == 1 and p.before(as_of).returned.shape[1] == 0  # the return (day 21) is later
    assert not c.features[:, f["returned"]].any()


def test_filters_leave_out_recent_returned_bought_and_other_categories(store):
    as_of = T0 + 28 * DAY
    stats = ItemStats.build(store, as_of)
    p = Purchases.of(store, as_of)

    def allowed(filters: Filters) -> set[str]:
        c = candidates(p, stats, as_of, filters=filters)
        names = store.vocabs["item_id"]
        return {names[i] for i in c.item[(c.row == 0) & c.allowed]}

    everything = allowed(Filters(exclude_returned=False))
    assert {"milk", "bread", "beer"} <= everything
    assert "beer" not in allowed(Filters())  # returned
    assert "milk" not in allowed(Filters(exclude_recent_days=2)) and "bread" in allowed(Filters(exclude_recent_days=2))
    assert allowed(Filters(new_only=True)).isdisjoint({"milk", "bread", "beer"})
    dairy = store.vocabs["category"].index("dairy")
    assert allowed(Filters(categories=np.array([dairy]))) <= {"milk", "butter"}
    assert "butter" in allowed(Filters(categories=np.array([dairy]), new_only=True))


def test_top_n_orders_each_row_best_first_and_pads():
    row = np.array([0, 0, 0, 1, 2, 2])
    item = np.array([5, 6, 7, 8, 9, 10])
    score = np.array([0.1, 0.9, 0.5, 1.0, -1.0, -2.0], np.float32)
    items, scores = top_n(row, item, score, 4, 2)
    assert items.tolist() == [[6, 7], [8, 0], [9, 10], [0, 0]]
    assert np.isnan(scores[1, 1]) and scores[0, 0] == pytest.approx(0.9)
