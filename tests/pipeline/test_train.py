"""End to end through Hydra: train.py's stages on a tiny generated log, checking every file of the bundle."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.bundle.writer import read_embeddings
from engine.config import ConfigError, validate
from engine.data import SequenceStore
from engine.index.index import load_index
from engine.index.signature import Weights
from engine.index.tuning import TUNE_GRID
from engine.model.io import load_model
from tests.conftest import compose_config, run

BUNDLE_FILES = {"manifest.json", "model.pt", "store", "embeddings.parquet", "segments.parquet", "centroids.npy",
                "hierarchy.json", "profiles.parquet", "forecast.parquet", "index.faiss", "report.html"}


def test_all_writes_every_file_of_the_bundle(bundle):
    assert BUNDLE_FILES <= {p.name for p in bundle.iterdir()}
    assert not [p for p in bundle.parent.iterdir() if ".tmp-" in p.name], "no staging directory left behind"
    manifest = json.loads((bundle / "manifest.json").read_text())
    n = manifest["counts"]["customers"]
    assert manifest["config"]["model"]["dim"] == 32 and manifest["data"]["fingerprint"]
    assert manifest["k"] == 4 and manifest["engine_version"]
    lookalike = manifest["lookalike"]  # the signature scorer's weights, tuned on the history's last quarter
    assert lookalike["tasks"] >= 10 and lookalike["roc_auc"] >= lookalike["default_roc_auc"]
    assert Weights.from_dict(lookalike["weights"]) in (Weights(), *TUNE_GRID)

    ids, emb = read_embeddings(bundle / "embeddings.parquet")
    assert emb.shape == (n, 2 + 16 + 64)  # the hybrid vector: value, sequence embedding, profile factors
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert pq.read_schema(bundle / "embeddings.parquet").field("embedding").type.list_size == 2 + 16 + 64

    segments = pq.read_table(bundle / "segments.parquet")
    assert segments["customer_id"].to_pylist() == ids.to_pylist()
    assert set(segments["segment"].to_pylist()) == {0, 1, 2, 3}
    assert "level_4" not in segments.column_names or segments.num_columns >= 4
    centroids = np.load(bundle / "centroids.npy")
    assert centroids.shape == (4, 2 + 16 + 64)

    profiles = pq.read_table(bundle / "profiles.parquet")
    assert profiles.num_rows == 4 and profiles["size"].to_numpy().sum() == n
    assert "mean_expected_spend" in profiles.column_names

    forecast = pq.read_table(bundle / "forecast.parquet")
    assert forecast.column_names == ["customer_id", "expected_purchases", "expected_spend", "p_buy", "p_churn", "p_alive",
                                     "lifetime_value", "rate", "spend_rate"]
    assert (forecast["expected_purchases"].to_numpy() >= 0).all()

    index = load_index(bundle / "index.faiss")
    assert index.ntotal == n
    scores, rows = index.search(emb[:3], 1)
    assert rows[:, 0].tolist() == [0, 1, 2]

    store = SequenceStore.open(bundle / "store")
    assert store.customer_ids.to_pylist() == ids.to_pylist()
    model, payload = load_model(bundle / "model.pt")
    assert payload["vocabs"] == store.vocabs
    html = (bundle / "report.html").read_text()
    assert html.count("<img") >= 3


def test_embed_stage_embeds_a_new_base_with_the_saved_model(bundle, other_log, tmp_path):
    out = tmp_path / "nightly"
    run(pipeline.run_embed, ["stage=embed", f"bundle={bundle}", f"data.path={other_log}", f"out_dir={out}"])
    ids, emb = read_embeddings(out / "embeddings.parquet")
    assert len(ids) == 150
    # the model and the segments' centroids are the bundle's: no retraining, stable segment ids
    assert (out / "model.pt").read_bytes() == (bundle / "model.pt").read_bytes()
    assert np.array_equal(np.load(out / "centroids.npy"), np.load(bundle / "centroids.npy"))
    seg = pq.read_table(out / "segments.parquet")
    expected = np.argmax(emb @ np.load(bundle / "centroids.npy").T, axis=1)
    assert np.array_equal(seg["segment"].to_numpy(), expected)
    assert load_index(out / "index.faiss").ntotal == 150


def test_embed_is_deterministic_and_matches_the_bundle(bundle, tiny_log, tmp_path):
    out = tmp_path / "again"
    run(pipeline.run_embed, ["stage=embed", f"bundle={bundle}", f"data.path={tiny_log}", f"out_dir={out}"])
    _, before = read_embeddings(bundle / "embeddings.parquet")
    _, after = read_embeddings(out / "embeddings.parquet")
    assert np.allclose(before, after, atol=1e-5)


def test_segment_stage_reclusters_with_stable_ids(bundle, tmp_path):
    out = tmp_path / "resegmented"
    run(pipeline.run_segment, ["stage=segment", f"bundle={bundle}", f"out_dir={out}"])
    old = pq.read_table(bundle / "segments.parquet")["segment"].to_numpy()
    new = pq.read_table(out / "segments.parquet")["segment"].to_numpy()
    assert (old == new).mean() > 0.95  # same embeddings, same k: the matched ids agree


def test_forecast_stage_answers_another_horizon_without_retraining(bundle, tmp_path):
    out = run(pipeline.run_forecast, [f"bundle={bundle}", "horizon_days=365", f"out_dir={tmp_path / 'year'}"])
    month, year = pq.read_table(bundle / "forecast.parquet"), pq.read_table(out / "forecast.parquet")
    assert year["customer_id"].to_pylist() == month["customer_id"].to_pylist()
    for name in ("p_alive", "rate", "spend_rate", "lifetime_value"):  # the same fitted process
        assert np.allclose(year[name].to_numpy(), month[name].to_numpy())
    assert (year["expected_spend"].to_numpy() >= month["expected_spend"].to_numpy()).all()
    assert year["expected_purchases"].to_numpy().sum() > 5 * month["expected_purchases"].to_numpy().sum()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["horizon_days"] == 365 and manifest["forecast"]["horizon_days"] == 365
    assert (out / "model.pt").read_bytes() == (bundle / "model.pt").read_bytes()
    profiles = pq.read_table(out / "profiles.parquet")
    assert profiles["mean_expected_spend"].to_numpy().sum() > pq.read_table(bundle / "profiles.parquet")[
        "mean_expected_spend"].to_numpy().sum()
    assert "Value by segment" in (out / "report.html").read_text()


def test_a_log_too_short_to_forecast_says_so_before_training(tmp_path):
    import pyarrow as pa

    n = 60
    events = pa.table({"customer_id": [f"c{i % 30}" for i in range(n)],
                       "ts": pa.array(1_700_000_000 + np.arange(n) * 3600, pa.int64()),
                       "event_type": ["purchase"] * n, "item_id": [f"i{i % 7}" for i in range(n)],
                       "amount": [5.0] * n})
    pq.write_table(events, tmp_path / "short.parquet")
    with pytest.raises(ValueError, match="learning a forecast needs at least 14 days"):
        run(pipeline.run_all, [f"data.path={tmp_path / 'short.parquet'}", f"out_dir={tmp_path / 'b'}"])
    assert not (tmp_path / "b").exists()


def test_fit_stage_then_embed(tiny_log, tmp_path):
    out = tmp_path / "fitted"
    run(pipeline.run_fit, ["stage=fit", f"data.path={tiny_log}", f"out_dir={out}"])
    assert {"manifest.json", "model.pt", "store"} <= {p.name for p in out.iterdir()}
    run(pipeline.run_embed, ["stage=embed", f"bundle={out}", f"data.path={tiny_log}", f"out_dir={out}"])
    assert BUNDLE_FILES <= {p.name for p in out.iterdir()}


def test_a_failing_stage_leaves_the_old_bundle(bundle, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()}
    with pytest.raises(Exception, match="no such file"):
        run(pipeline.run_embed, ["stage=embed", f"bundle={bundle}", "data.path=/nonexistent.parquet",
                                 f"out_dir={bundle}"])
    assert {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()} == before


@pytest.mark.parametrize("override, message", [
    ("segment.k=0", "segment.k=0"),
    ("data.on_bad_rows=skip", "data.on_bad_rows='skip'"),
    ("stage=train", "stage='train'"),
    ("+trainer.max_epoch=3", "trainer.max_epoch: not an argument"),
    ("+model.hidden=3", "model.hidden: not an argument"),
    ("represent.value=head", "represent.value='head'"),
    ("represent.value_scale=cubic", "represent.value_scale='cubic'"),
])
def test_bad_config_fails_before_any_work_naming_the_key(override, message):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(cfg)


def test_wrong_type_fails_at_composition():
    with pytest.raises(Exception, match="min_count"):
        compose_config(["data.min_count=many"])


def test_stage_requires_a_bundle(tmp_path):
    with pytest.raises(Exception, match="needs an existing bundle"):
        run(pipeline.run_segment, ["stage=segment", f"out_dir={tmp_path / 'none'}"])


def test_erased_customers_stay_erased_when_retrained_over_the_old_log(bundle, tiny_log, tmp_path):
    import shutil

    from engine.bundle import Bundle

    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    ids, _ = read_embeddings(out / "embeddings.parquet")
    victim = ids[5].as_py()
    Bundle.load(out).erase(victim)
    run(pipeline.run_all, [f"data.path={tiny_log}", f"out_dir={out}"])  # the raw log still has the victim
    new_ids, _ = read_embeddings(out / "embeddings.parquet")
    assert victim not in new_ids.to_pylist() and len(new_ids) == len(ids) - 1
    assert victim not in SequenceStore.open(out / "store").customer_ids.to_pylist()
    assert victim in (out / "tombstones.jsonl").read_text()


def test_transformer_encoder_trains_and_embeds(tiny_log, tmp_path):
    out = tmp_path / "transformer"
    run(pipeline.run_all, ["model=transformer", f"data.path={tiny_log}", f"out_dir={out}"])
    _, emb = read_embeddings(out / "embeddings.parquet")
    model, _ = load_model(out / "model.pt")
    assert type(model.encoder).__name__ == "TransformerEncoder"
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4) and np.isfinite(emb).all()


def test_training_resumes_from_the_last_checkpoint(tiny_log, tmp_path):
    import torch

    out, work = tmp_path / "fitted", tmp_path / "work"
    common = ["stage=fit", f"data.path={tiny_log}", f"out_dir={out}", f"work_dir={work}"]
    run(pipeline.run_fit, common)
    last = work / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    run(pipeline.run_fit, common + ["trainer.max_epochs=2", f"ckpt_path={last}"])
    assert torch.load(last, weights_only=False)["epoch"] == 1  # went on from epoch 1, not from scratch


def test_a_sweep_writes_one_bundle_per_job(tiny_log, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "model.dim=16,32", f"data.path={tiny_log}",
           f"out_dir={out}", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "segment.k=3",
           "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    dims = [json.loads((out / str(job) / "manifest.json").read_text())["config"]["model"]["dim"] for job in (0, 1)]
    assert dims == [16, 32]
