"""The synthetic generator: schema, determinism, planted structure, the realism that keeps it from flattering
a model (overlapping archetypes, light customers, shared best sellers), CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data.synthetic import SyntheticConfig, generate, main

REPO = Path(__file__).resolve().parents[2]
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("ts", pa.timestamp("s", tz="UTC")),
        ("event_type", pa.string()),
        ("item_id", pa.string()),
        ("category", pa.string()),
        ("amount", pa.float64()),
        ("quantity", pa.int64()),
        ("channel", pa.string()),
    ]
)


FLAT = dict(overlap=0.0, light_share=0.0, popular_share=0.0)  # the old, flattering log


@pytest.fixture(scope="module")
def log() -> tuple[pa.Table, pa.Table]:
    return generate(SyntheticConfig(n_customers=2000, seed=7))


@pytest.fixture(scope="module")
def flat_log() -> tuple[pa.Table, pa.Table]:
    return generate(SyntheticConfig(n_customers=2000, seed=7, **FLAT))


def adjusted_rand(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings int [n]."""
    _, a = np.unique(labels_a, return_inverse=True)
    _, b = np.unique(labels_b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols, total = (
        pairs(table),
        pairs(table.sum(1)),
        pairs(table.sum(0)),
        pairs(np.array([a.size])),
    )
    expected = rows * cols / total
    return (index - expected) / ((rows + cols) / 2 - expected)


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = 5, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ starts; returns labels int [n] of the lowest-inertia run."""
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centers = x[rng.integers(len(x))][None]
        for _ in range(k - 1):
            d = ((x[:, None] - centers[None]) ** 2).sum(-1).min(1)
            centers = np.vstack([centers, x[rng.choice(len(x), p=d / d.sum())]])
        for _ in range(iters):
            labels = ((x[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
            centers = np.stack(
                [x[labels == j].mean(0) if (labels == j).any() else centers[j] for j in range(k)]
            )
        inertia = ((x - centers[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def customer_index(events: pa.Table, archetypes: pa.Table) -> np.ndarray:
    """Row of each event's customer in the archetypes table, int [n_events]."""
    ids = archetypes["customer_id"].to_numpy(zero_copy_only=False)
    order = np.argsort(ids)
    return order[np.searchsorted(ids[order], events["customer_id"].to_numpy(zero_copy_only=False))]


def category_histograms(events: pa.Table, archetypes: pa.Table) -> np.ndarray:
    """float [n_customers, n_categories]: share of each customer's events per category."""
    _, cat = np.unique(events["category"].to_numpy(zero_copy_only=False), return_inverse=True)
    hist = np.zeros((archetypes.num_rows, cat.max() + 1))
    np.add.at(hist, (customer_index(events, archetypes), cat), 1.0)
    return hist / hist.sum(1, keepdims=True)


def purchase_counts(events: pa.Table, archetypes: pa.Table) -> np.ndarray:
    """int [n_customers]: purchase events per customer."""
    purchase = events["event_type"].to_numpy(zero_copy_only=False) == "purchase"
    return np.bincount(customer_index(events, archetypes)[purchase], minlength=archetypes.num_rows)


def archetype_profiles(events: pa.Table, archetypes: pa.Table) -> np.ndarray:
    """float [n_archetypes, n_categories]: mean category histogram of each archetype's customers."""
    hist, arch = category_histograms(events, archetypes), archetypes["archetype"].to_numpy()
    return np.stack([hist[arch == a].mean(0) for a in range(arch.max() + 1)])


def item_shares(events: pa.Table, archetypes: pa.Table) -> np.ndarray:
    """float [n_archetypes, n_items bought]: share of each archetype's purchases per item."""
    purchase = events["event_type"].to_numpy(zero_copy_only=False) == "purchase"
    _, item = np.unique(events["item_id"].to_numpy(zero_copy_only=False)[purchase], return_inverse=True)
    arch = archetypes["archetype"].to_numpy()[customer_index(events, archetypes)[purchase]]
    table = np.zeros((arch.max() + 1, item.max() + 1))
    np.add.at(table, (arch, item), 1.0)
    return table / table.sum(1, keepdims=True)


def rfm(events: pa.Table, archetypes: pa.Table, days: int = 365) -> np.ndarray:
    """float [n_customers, 3]: log recency (days), log frequency, log monetary of purchases, standardized."""
    purchase = events["event_type"].to_numpy(zero_copy_only=False) == "purchase"
    cust = customer_index(events, archetypes)[purchase]
    day = events["ts"].to_numpy().astype("datetime64[s]").astype(np.int64)[purchase] / 86400.0
    last = np.full(archetypes.num_rows, day.min() - 1.0)
    np.maximum.at(last, cust, day)
    frequency = np.bincount(cust, minlength=archetypes.num_rows)
    monetary = np.bincount(cust, events["amount"].to_numpy()[purchase], archetypes.num_rows)
    features = np.log1p(np.stack([day.min() + days - last, frequency, monetary], 1))
    return (features - features.mean(0)) / features.std(0)


def test_deterministic_for_a_seed() -> None:
    config = SyntheticConfig(n_customers=300, seed=3)
    first, second = generate(config), generate(config)
    assert first[0].equals(second[0]) and first[1].equals(second[1])
    assert not generate(SyntheticConfig(n_customers=300, seed=4))[0].equals(first[0])


def test_schema_and_values(log: tuple[pa.Table, pa.Table]) -> None:
    events, archetypes = log
    assert events.schema.equals(SCHEMA)
    assert archetypes.schema.equals(
        pa.schema([("customer_id", pa.string()), ("archetype", pa.int32()), ("archetype_name", pa.string())])
    )
    assert set(events["event_type"].to_pylist()) == {"view", "cart", "purchase", "return"}
    assert set(events["channel"].to_pylist()) == {"web", "app", "store", "email"}
    assert events["customer_id"][0].as_py().startswith("c") and len(events["customer_id"][0].as_py()) == 8
    assert events["quantity"].to_numpy().min() >= 1
    assert archetypes.num_rows == 2000 and len(set(archetypes["customer_id"].to_pylist())) == 2000


def test_timestamps_sorted_and_within_span(log: tuple[pa.Table, pa.Table]) -> None:
    ts = log[0]["ts"].to_numpy().astype("datetime64[s]")
    assert (np.diff(ts.astype(np.int64)) >= 0).all()
    assert ts.min() >= np.datetime64("2024-01-01T00:00:00") and ts.max() < np.datetime64(
        "2024-12-31T00:00:00"
    )


def test_every_archetype_present(log: tuple[pa.Table, pa.Table]) -> None:
    counts = np.bincount(log[1]["archetype"].to_numpy(), minlength=6)
    assert counts.size == 6 and counts.min() > 100
    assert len(set(log[1]["archetype_name"].to_pylist())) == 6


def test_event_counts_heavy_tailed(log: tuple[pa.Table, pa.Table]) -> None:
    counts = np.bincount(customer_index(*log), minlength=2000)
    assert counts.min() >= 1 and counts.max() > 10 * np.median(counts)
    assert 45 < counts.mean() < 75  # light customers included: mean_events is the mean of all
    assert 0.33 < (counts <= 5).mean() < 0.45  # light_share=0.35 of 1-5 events, and a few regular ones


def test_many_buyers_buy_only_once_or_twice(
    log: tuple[pa.Table, pa.Table], flat_log: tuple[pa.Table, pa.Table]
) -> None:
    purchases = purchase_counts(*log)
    buyers = purchases[purchases > 0]
    assert 0.3 <= (buyers <= 2).mean() <= 0.6  # real retail logs: 30-60% of buyers buy once or twice a year
    assert 0.35 <= (purchases <= 2).mean() <= 0.65  # of all customers, those who never buy included
    assert (purchases == 0).mean() < 0.3
    flat = purchase_counts(*flat_log)
    assert (flat[flat > 0] <= 2).mean() < 0.3  # without light customers the low tail is thin


def test_item_popularity_is_concentrated(log: tuple[pa.Table, pa.Table]) -> None:
    events = log[0]
    purchase = events["event_type"].to_numpy(zero_copy_only=False) == "purchase"
    purchases = events["item_id"].to_numpy(zero_copy_only=False)[purchase]
    counts = np.sort(np.unique(purchases, return_counts=True)[1])[::-1]
    assert counts[:20].sum() / counts.sum() > 0.1  # top 1% of 2000 items


def min_jensen_shannon(profile: np.ndarray) -> float:
    """Smallest Jensen-Shannon divergence between two rows of profile float [n, k] (rows sum to 1)."""
    mean = (profile[:, None] + profile[None]) / 2
    kl = (profile[:, None] * np.log(profile[:, None] / mean)).sum(-1)
    js = (kl + kl.T) / 2
    return float(js[~np.eye(len(profile), dtype=bool)].min())


def test_archetypes_prefer_different_categories(
    log: tuple[pa.Table, pa.Table], flat_log: tuple[pa.Table, pa.Table]
) -> None:
    profile, flat = archetype_profiles(*log), archetype_profiles(*flat_log)
    assert len(set(profile.argmax(1))) == 6 and len(set(flat.argmax(1))) == 6  # top categories stay distinct
    assert 0.05 < min_jensen_shannon(profile) < 0.2 < min_jensen_shannon(flat)  # closer when they overlap


def test_archetypes_share_top_categories(
    log: tuple[pa.Table, pa.Table], flat_log: tuple[pa.Table, pa.Table]
) -> None:
    def pairs_sharing(profile: np.ndarray) -> int:
        top = np.argsort(-profile, axis=1)[:, :3]
        shared = (top[:, None, :, None] == top[None, :, None, :]).any((2, 3))
        return int(np.triu(shared, 1).sum())

    assert pairs_sharing(archetype_profiles(*log)) >= 2
    assert pairs_sharing(archetype_profiles(*flat_log)) == 0


def test_best_sellers_are_bought_by_every_archetype(
    log: tuple[pa.Table, pa.Table], flat_log: tuple[pa.Table, pa.Table]
) -> None:
    assert item_shares(*log).min(0).max() >= 0.02  # an item with >= 2% of every archetype's purchases
    assert item_shares(*flat_log).min(0).max() < 0.005
    no_popular = generate(SyntheticConfig(n_customers=2000, seed=7, popular_share=0.0))
    assert item_shares(*no_popular).min(0).max() < 0.02


def test_returns_follow_purchases_with_negative_amounts(log: tuple[pa.Table, pa.Table]) -> None:
    events = log[0]
    kind = events["event_type"].to_numpy(zero_copy_only=False)
    amount = events["amount"].to_numpy()
    assert (amount[kind == "return"] < 0).all() and (amount[kind != "return"] > 0).all()
    pairs = np.char.add(
        events["customer_id"].to_numpy(zero_copy_only=False).astype(str),
        events["item_id"].to_numpy(zero_copy_only=False).astype(str),
    )
    assert np.isin(pairs[kind == "return"], pairs[kind == "purchase"]).all()


def test_categories_separate_archetypes_but_rfm_does_not(
    log: tuple[pa.Table, pa.Table], flat_log: tuple[pa.Table, pa.Table]
) -> None:
    truth = log[1]["archetype"].to_numpy()
    hist = np.sqrt(category_histograms(*log))
    by_category = adjusted_rand(truth, kmeans(hist, 6))
    seen = np.bincount(customer_index(*log), minlength=truth.size) >= 30
    by_category_seen = adjusted_rand(truth[seen], kmeans(hist[seen], 6))
    by_rfm = adjusted_rand(truth, kmeans(rfm(*log), 6))
    assert 0.3 <= by_category <= 0.7, by_category  # overlap and light customers: no longer near-perfect
    assert by_category_seen >= 0.65, by_category_seen  # customers seen often still carry their archetype
    assert by_rfm < 0.3, by_rfm
    flat_truth = flat_log[1]["archetype"].to_numpy()
    by_category_flat = adjusted_rand(flat_truth, kmeans(np.sqrt(category_histograms(*flat_log)), 6))
    assert by_category_flat >= 0.9, by_category_flat  # the new fields at 0: the old, separable log


@pytest.mark.parametrize(
    ("field", "value"), [("overlap", 0.6), ("light_share", 1.0), ("popular_share", -0.1)]
)
def test_out_of_range_field_is_named(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"SyntheticConfig.{field}={value}"):
        generate(SyntheticConfig(n_customers=10, **{field: value}))


def test_more_archetypes_are_generated_procedurally() -> None:
    _, archetypes = generate(SyntheticConfig(n_customers=1000, n_archetypes=9, seed=1))
    assert set(archetypes["archetype"].to_numpy()) == set(range(9))


def run_cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-m", "engine.data.synthetic", *args],
        check=True,
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )


def test_cli_writes_parquet(tmp_path: Path) -> None:
    run_cli("--customers", "200", "--out", str(tmp_path), "--seed", "5", "--days", "30")
    events = pq.read_table(tmp_path / "events.parquet")
    assert events.schema.names == SCHEMA.names and events.num_rows > 400
    assert events.schema.field("ts").type == pa.timestamp("ms", tz="UTC")  # Parquet has no seconds unit
    assert pq.read_table(tmp_path / "archetypes.parquet").num_rows == 200


def test_cli_writes_a_directory_of_parts(tmp_path: Path) -> None:
    run_cli("--customers", "200", "--out", str(tmp_path), "--files", "3")
    parts = sorted((tmp_path / "events").glob("events-*.parquet"))
    assert [p.name for p in parts] == [f"events-0000{i}.parquet" for i in range(3)]
    assert pq.read_table(tmp_path / "events").num_rows == sum(pq.read_metadata(p).num_rows for p in parts)


def test_cli_passes_the_realism_fields(tmp_path: Path) -> None:
    flags = ["--overlap", "0", "--light-share", "0", "--popular-share", "0"]
    main(["--customers", "100", "--out", str(tmp_path), "--seed", "2", *flags])
    events, _ = generate(SyntheticConfig(n_customers=100, seed=2, **FLAT))
    written = pq.read_table(tmp_path / "events.parquet")
    assert written.num_rows == events.num_rows
    assert written["item_id"].equals(events["item_id"])


def test_csv_has_iso_timestamps(tmp_path: Path) -> None:
    path = main(["--customers", "50", "--out", str(tmp_path), "--csv"])
    assert path == tmp_path / "events.csv"
    header, first = path.read_text().splitlines()[:2]
    assert header.replace('"', "").split(",")[:2] == ["customer_id", "ts"]
    assert first.split(",")[1].strip('"').endswith("Z")
    assert np.datetime64(first.split(",")[1].strip('"').rstrip("Z"), "s")  # ISO 8601
