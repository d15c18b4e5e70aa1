"""Recommendations through train.py's stages: the batch file of stage=all, stage=recommend with a shop's
options, a log too short to learn from, and erasure carried into the next bundle's item statistics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.bundle import Bundle, BundleError
from engine.data import SequenceStore
from engine.data.synthetic import SyntheticConfig, write
from engine.recommend.items import ItemStats, Purchases
from tests.conftest import run


def bought_items(store: SequenceStore) -> dict[str, set[str]]:
    p = Purchases.of(store)
    vocab, ids = store.vocabs["item_id"], store.customer_ids.to_pylist()
    out: dict[str, set[str]] = {i: set() for i in ids}
    for r, i in zip(p.row, p.item, strict=True):
        out[ids[r]].add(vocab[i])
    return out


def test_all_writes_ranked_recommendations_for_every_customer(bundle):
    table = pq.read_table(bundle / "recommendations.parquet")
    assert table.column_names == ["customer_id", "item_id", "rank", "score"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    store = SequenceStore.open(bundle / "store")
    assert set(table["customer_id"].to_pylist()) == set(store.customer_ids.to_pylist())
    assert manifest["recommend"]["n"] == 20 and manifest["recommend"]["windows"] >= 1
    rows = table.to_pylist()
    by_customer: dict[str, list[dict]] = {}
    for r in rows:
        by_customer.setdefault(r["customer_id"], []).append(r)
    for items in by_customer.values():
        assert [r["rank"] for r in items] == list(range(1, len(items) + 1)) and len(items) == 20
        scores = [r["score"] for r in items]
        assert scores == sorted(scores, reverse=True)
        assert len({r["item_id"] for r in items}) == len(items)
    assert (bundle / "items" / "ranker.pt").exists() and (bundle / "items" / "discovery.pt").exists()
    promote = (bundle / "segment_items.md").read_text()  # what to promote to each segment, also in the report
    assert promote.startswith("| segment | customers | item |") and "| x" in promote
    assert "What each segment buys more than the base" in (bundle / "report.html").read_text()
    # 24 customers held out of the encoder's training: too few to learn how far to trust its item scores
    assert not manifest["recommend"]["model_scores"] and not (bundle / "items" / "items.faiss").exists()


def test_new_item_lists_read_the_model_when_enough_customers_were_held_out_of_its_training(bundle):
    from engine.model.io import load_model
    from engine.recommend.candidates import Filters
    from engine.recommend.recommender import fit_recommender, sequence_embeddings

    store = SequenceStore.open(bundle / "store")
    as_of = json.loads((bundle / "manifest.json").read_text())["as_of"]
    model, _ = load_model(bundle / "model.pt")
    unseen = np.arange(store.n_customers) % 2 == 0
    rec = fit_recommender(store, as_of, model, 28, {"accelerator": "cpu", "devices": 1,
                                                    "enable_progress_bar": False}, unseen=unseen)
    assert rec.summary["model_scores"] and rec.index is not None and rec.index.ntotal == len(model.item_vectors)
    sequence = sequence_embeddings(model, store, 256)
    p = Purchases.of(store, as_of)
    plain, _ = rec.recommend(p, sequence, as_of, 10, Filters(new_only=True))
    p_items = {(r, i) for r, i in zip(p.row, p.item, strict=True)}
    assert all((r, i) not in p_items for r in range(store.n_customers) for i in plain[r] if i > 0)
    moved = rec.model_scores(sequence[::-1].copy())  # other customers' embeddings change the new-item lists
    assert moved is not None
    other, _ = rec.recommend(p, sequence[::-1].copy(), as_of, 10, Filters(new_only=True))
    assert (other != plain).any()
    main_a, _ = rec.recommend(p, sequence, as_of, 10)
    main_b, _ = rec.recommend(p, None, as_of, 10)
    assert np.array_equal(main_a, main_b)  # the main lists read the history alone


def test_recommend_stage_answers_other_options_without_retraining(bundle, tmp_path):
    out = tmp_path / "new-only"
    run(pipeline.run_recommend, ["stage=recommend", f"bundle={bundle}", f"out_dir={out}", "recommend.n=5",
                                 "recommend.new_only=true"])
    table = pq.read_table(out / "recommendations.parquet")
    bought = bought_items(SequenceStore.open(out / "store"))
    assert table.num_rows == 5 * len(bought)
    for r in table.to_pylist():
        assert r["item_id"] not in bought[r["customer_id"]], r
    assert (pc.max(table["rank"]).as_py()) == 5
    assert (out / "model.pt").read_bytes() == (bundle / "model.pt").read_bytes()


def test_recommend_stage_restricts_to_categories_and_names_an_unknown_one(bundle, tmp_path):
    store = SequenceStore.open(bundle / "store")
    category = store.vocabs["category"][1]
    out = tmp_path / "one-category"
    run(pipeline.run_recommend, ["stage=recommend", f"bundle={bundle}", f"out_dir={out}", "recommend.n=3",
                                 f"recommend.categories=[{category}]"])
    stats = ItemStats.load(out / "items")
    item_ids = {t: i for i, t in enumerate(store.vocabs["item_id"])}
    items = pq.read_table(out / "recommendations.parquet")["item_id"].to_pylist()
    assert items and {store.vocabs["category"][stats.category[item_ids[i]]] for i in items} == {category}
    with pytest.raises(ValueError, match="recommend.categories"):
        run(pipeline.run_recommend, ["stage=recommend", f"bundle={bundle}", f"out_dir={tmp_path / 'x'}",
                                     "recommend.categories=[no-such-category]"])


def test_a_log_too_short_to_learn_recommendations_says_so_and_ships_none(tmp_path, caplog):
    events = write(SyntheticConfig(n_customers=200, days=30, mean_events=20, seed=2, n_items=100), tmp_path / "log")
    out = tmp_path / "bundle"
    with caplog.at_level("WARNING"):
        run(pipeline.run_all, [f"data.path={events}", f"out_dir={out}"])
    assert "no recommendations" in caplog.text and "needs at least twice" in caplog.text
    assert not (out / "recommendations.parquet").exists() and not (out / "items").exists()
    with pytest.raises(BundleError, match="no recommender"):
        run(pipeline.run_recommend, ["stage=recommend", f"bundle={out}", f"out_dir={tmp_path / 'again'}"])


def test_an_erased_customer_leaves_the_next_bundles_recommendations_and_item_statistics(bundle, tiny_log, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    table = pq.read_table(out / "recommendations.parquet")
    victim = table["customer_id"][0].as_py()
    loaded = Bundle.load(out)
    loaded.erase(victim)
    assert victim not in pq.read_table(out / "recommendations.parquet")["customer_id"].to_pylist()
    assert victim not in loaded.customers.recommendations["customer_id"].to_pylist()
    run(pipeline.run_all, [f"data.path={tiny_log}", f"out_dir={out}"])  # the raw log still has the victim
    assert victim not in pq.read_table(out / "recommendations.parquet")["customer_id"].to_pylist()
    store = SequenceStore.open(out / "store")
    others = ItemStats.build(store, json.loads((out / "manifest.json").read_text())["as_of"])
    stats = ItemStats.load(out / "items")
    assert np.array_equal(stats.buyers, others.buyers) and np.array_equal(stats.neighbours, others.neighbours)
    assert stats.n_customers == store.n_customers == loaded.customers.n
