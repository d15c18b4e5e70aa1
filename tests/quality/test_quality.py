"""Quality on the generated log (overlapping archetypes, light customers, shared popular items), from one
evaluate run (train before the cutoff, score after it): the customer vector keeps the archetypes, segments
explain later value better than RFM and BG/NBD tiles, lookalikes beat every baseline, and the forecast
beats the baselines on ranking and revenue capture (tests/quality/test_real_log.py: the same on a real log)."""

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
from engine.segment.kmeans import adjusted_rand_index, spherical_kmeans
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
def test_the_vector_keeps_the_archetypes_and_segments_explain_value(evaluated):
    """The hybrid vector's behaviour part (everything but the 2 value coordinates) still recovers the
    overlapping archetypes far better than RFM; the segments themselves weigh value too, and at k=8 explain
    more of the later spend and purchases than RFM k-means, RFM cells and 8 tiles of BG/NBD spend."""
    bundle, archetypes = evaluated
    planted, embeddings = truth(bundle, archetypes)
    behaviour = embeddings[:, 2:] / np.linalg.norm(embeddings[:, 2:], axis=1, keepdims=True)
    learned = adjusted_rand_index(planted, spherical_kmeans(behaviour.astype(np.float32), 6, seed=0, nredo=3)[1])
    rfm = adjusted_rand_index(planted, rfm_kmeans(SequenceStore.open(bundle / "store"), 6))
    assert learned >= 0.35, f"ARI {learned:.3f}"
    assert learned > rfm + 0.25, f"learned ARI {learned:.3f} vs RFM {rfm:.3f}"
    segments = json.loads((bundle / "evaluation.json").read_text())["segments"]
    for name in ("rfm_kmeans", "rfm_cells", "bgnbd_tiles"):
        for figure in ("spend", "purchases"):
            assert segments["engine_k8"][figure] > segments[name][figure], (name, figure, segments)


@pytest.mark.slow
def test_lookalikes_beat_every_baseline(evaluated):
    bundle, _ = evaluated
    methods = json.loads((bundle / "evaluation.json").read_text())["lookalike"]["methods"]
    engine = methods["engine"]["all"]
    assert engine["tasks"] >= 20
    assert "The default scorer's weights: signature of" in (bundle / "evaluation.md").read_text()
    for name in ("tfidf", "tfidf_svd", "tfidf_knn", "activity", "oracle"):
        assert engine["roc_auc"] > methods[name]["all"]["roc_auc"], (name, engine, methods[name])
        assert engine["average_precision"] > methods[name]["all"]["average_precision"], (name, engine, methods[name])


@pytest.mark.slow
def test_forecast_beats_bgnbd_on_ranking_and_rmse_and_ties_it_on_mae(evaluated):
    """On the generated log the forecast of the 30 days after the cutoff (transactions: purchase days, its
    lines have times of their own) beats BG/NBD + Gamma-Gamma and the other baselines on RMSE and Spearman,
    with its total within 10%; its MAE ties BG/NBD's (0.600 vs 0.590 here: not a win) and beats the others
    (bench/quality.py --suite forecast: three horizons, three seeds)."""
    bundle, _ = evaluated
    result = json.loads((bundle / "evaluation.json").read_text())["forecast"]["30"]
    table = result["metrics"]
    neural = table.pop("neural")
    assert set(table) == {"naive", "rfm_quantile", "bgnbd_gamma_gamma", "pareto_nbd", "zero"}, "every baseline ran"
    assert {"r", "alpha", "a", "b", "penalizer"} <= set(result["params"]["bgnbd_gamma_gamma"])
    interval = result["intervals"]["bgnbd_gamma_gamma"]  # engine - BG/NBD over resampled customers
    assert set(interval) == {"mae", "rmse", "spearman", "top10_revenue_capture"}
    assert all(lo <= hi for lo, hi in interval.values())
    assert abs(neural["total_error"]) < 0.10, neural
    for name, baseline in table.items():
        assert neural["rmse"] < baseline["rmse"], (name, neural, baseline)
        if name != "zero":  # a constant has no rank correlation
            assert neural["spearman"] > baseline["spearman"], (name, neural, baseline)
        if name not in ("bgnbd_gamma_gamma", "pareto_nbd"):
            assert neural["mae"] < baseline["mae"], (name, neural, baseline)
    assert neural["mae"] < 1.03 * table["bgnbd_gamma_gamma"]["mae"], (neural, table["bgnbd_gamma_gamma"])
