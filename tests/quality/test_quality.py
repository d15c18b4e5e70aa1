"""Quality on the generated log with planted archetypes, from one evaluate run (train before the cutoff,
score after it): segments recover the archetypes and beat RFM clustering; lookalikes beat TF-IDF; the
forecast beats BG/NBD + Gamma-Gamma, RFM quantiles and the naive rate."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.bundle.writer import read_embeddings
from engine.data import SequenceStore
from engine.data.summary import customer_summary
from engine.data.synthetic import SyntheticConfig, write
from engine.segment.kmeans import adjusted_rand_index
from tests.conftest import compose_config

N_CUSTOMERS = 2000
CUTOFF = "2024-11-01"  # day 305 of 365: history before, 60 days to score after


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    log_path = write(SyntheticConfig(n_customers=N_CUSTOMERS, seed=3), root / "log")
    cfg = compose_config([
        "stage=evaluate", f"data.path={log_path}", f"out_dir={root / 'bundle'}", f"data.cutoff={CUTOFF}",
        "trainer.max_epochs=8", "trainer.enable_progress_bar=false", "segment.k=6", "forecast.horizon_days=30",
    ])
    pipeline.run_evaluate(cfg)
    return root / "bundle", root / "log" / "archetypes.parquet"


def truth(bundle, archetypes_path) -> tuple[np.ndarray, np.ndarray]:
    ids, embeddings = read_embeddings(bundle / "embeddings.parquet")
    planted = pq.read_table(archetypes_path)
    lookup = dict(zip(planted["customer_id"].to_pylist(), planted["archetype"].to_pylist(), strict=True))
    return np.array([lookup[c] for c in ids.to_pylist()]), embeddings


def rfm_kmeans(store: SequenceStore, k: int) -> np.ndarray:
    """k-means on hand-made RFM features: log recency, frequency, monetary, standardised."""
    s = customer_summary(store)
    x = np.log1p(np.stack([s["recency_days"].to_numpy(), s["frequency"].to_numpy(), s["spend"].to_numpy()], 1))
    x = ((x - x.mean(0)) / np.maximum(x.std(0), 1e-9)).astype(np.float32)
    km = faiss.Kmeans(3, k, seed=0, nredo=5, niter=50)
    km.train(x)
    return km.index.search(x, 1)[1].ravel()


@pytest.mark.slow
def test_segments_recover_archetypes_and_beat_rfm(evaluated):
    bundle, archetypes = evaluated
    planted, _ = truth(bundle, archetypes)
    segments = pq.read_table(bundle / "segments.parquet")["segment"].to_numpy()
    learned = adjusted_rand_index(planted, segments)
    rfm = adjusted_rand_index(planted, rfm_kmeans(SequenceStore.open(bundle / "store"), 6))
    assert learned >= 0.8, f"ARI {learned:.3f}"
    assert learned > rfm + 0.3, f"learned ARI {learned:.3f} vs RFM {rfm:.3f}"


@pytest.mark.slow
def test_lookalikes_beat_tfidf(evaluated):
    bundle, _ = evaluated
    result = json.loads((bundle / "evaluation.json").read_text())["lookalike"]
    engine, tfidf, ceiling = result["engine"], result["tfidf"], result["ceiling"]
    assert engine["tasks"] >= 10
    assert engine["roc_auc"] > tfidf["roc_auc"], result
    assert engine["average_precision"] > 1.2 * tfidf["average_precision"], result
    assert engine["average_precision"] > 0.9 * ceiling["average_precision"], result


@pytest.mark.slow
def test_forecast_beats_every_baseline(evaluated):
    bundle, _ = evaluated
    table = json.loads((bundle / "evaluation.json").read_text())["forecast"]
    neural = table.pop("neural")
    assert set(table) == {"naive", "rfm_quantile", "bgnbd_gamma_gamma"}, "every baseline ran"
    assert abs(neural["total_error"]) < 0.10, neural
    for name, baseline in table.items():
        assert neural["mae"] < baseline["mae"] and neural["rmse"] < baseline["rmse"], (name, neural, baseline)
        assert neural["top10_revenue_capture"] > baseline["top10_revenue_capture"], (name, neural, baseline)
