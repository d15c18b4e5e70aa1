"""The synthetic generator: schema, determinism, planted structure, CLI."""

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


@pytest.fixture(scope="module")
def log() -> tuple[pa.Table, pa.Table]:
    return generate(SyntheticConfig(n_customers=2000, seed=7))


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
    assert counts.min() >= 2 and counts.max() > 10 * np.median(counts)
    assert 45 < counts.mean() < 75


def test_item_popularity_is_concentrated(log: tuple[pa.Table, pa.Table]) -> None:
    events = log[0]
    purchase = events["event_type"].to_numpy(zero_copy_only=False) == "purchase"
    purchases = events["item_id"].to_numpy(zero_copy_only=False)[purchase]
    counts = np.sort(np.unique(purchases, return_counts=True)[1])[::-1]
    assert counts[:20].sum() / counts.sum() > 0.1  # top 1% of 2000 items


def test_archetypes_prefer_different_categories(log: tuple[pa.Table, pa.Table]) -> None:
    hist = category_histograms(*log)
    arch = log[1]["archetype"].to_numpy()
    profile = np.stack([hist[arch == a].mean(0) for a in range(6)])
    assert len(set(profile.argmax(1))) == 6
    mean = (profile[:, None] + profile[None]) / 2
    kl = (profile[:, None] * np.log(profile[:, None] / mean)).sum(-1)
    js = (kl + kl.T) / 2
    assert js[~np.eye(6, dtype=bool)].min() > 0.2


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


def test_categories_separate_archetypes_but_rfm_does_not(log: tuple[pa.Table, pa.Table]) -> None:
    truth = log[1]["archetype"].to_numpy()
    by_category = adjusted_rand(truth, kmeans(np.sqrt(category_histograms(*log)), 6))
    by_rfm = adjusted_rand(truth, kmeans(rfm(*log), 6))
    assert by_category >= 0.8, by_category
    assert by_rfm < 0.6, by_rfm


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


def test_csv_has_iso_timestamps(tmp_path: Path) -> None:
    path = main(["--customers", "50", "--out", str(tmp_path), "--csv"])
    assert path == tmp_path / "events.csv"
    header, first = path.read_text().splitlines()[:2]
    assert header.replace('"', "").split(",")[:2] == ["customer_id", "ts"]
    assert first.split(",")[1].strip('"').endswith("Z")
    assert np.datetime64(first.split(",")[1].strip('"').rstrip("Z"), "s")  # ISO 8601
