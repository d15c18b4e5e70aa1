"""A real small bundle, built once per session, and real HTTP servers over it.

The bundle comes from the training pipeline (engine.pipeline, composed like train.py with tiny settings) when
it is there, otherwise from the same parts assembled here (generator, store, one short Lightning epoch, batch
embedding, k-means, hierarchy, profiles, index, BundleWriter). Tests that write (erasure, reload) copy it.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import uvicorn

from engine.data.synthetic import SyntheticConfig, write
from engine.embed.online import stored_events
from engine.service import create_app

N_CUSTOMERS, K, HORIZON_DAYS = 300, 6, 30
TOKEN = "test-token"


def _pipeline_bundle(events: Path, out: Path) -> Path | None:
    """The bundle written by train.py's pipeline, or None when there is no pipeline to run."""
    try:
        import engine.config
        from engine import pipeline
    except ImportError:
        return None
    run = getattr(pipeline, "run", None) or getattr(pipeline, "run_all", None)
    if run is None:
        return None
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    overrides = [
        f"data.path={events}",
        f"out_dir={out}",
        f"work_dir={out}.work",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=3",
        "++trainer.limit_val_batches=1",
        "trainer.logger=false",
        "trainer.callbacks=[]",
        "++trainer.enable_checkpointing=false",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "restore_best=false",
        f"segment.k={K}",
        "segment.nredo=1",
        "model.dim=32",
        "model.out_dim=16",
        "loader.batch_size=32",
        f"forecast.horizon_days={HORIZON_DAYS}",
    ]
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config", overrides=overrides)
    engine.config.validate(cfg)
    run(cfg)
    return out


def _parts_bundle(events: Path, out: Path) -> Path:
    """The bundle assembled from the engine's parts, laid out as docs/bundle.md describes."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from engine.bundle import BundleWriter
    from engine.bundle.writer import embeddings_table
    from engine.data import EventLogSpec, load_store
    from engine.data.summary import customer_summary
    from engine.embed.writer import embed_base, forecast_table
    from engine.forecast.process import Process
    from engine.index.index import build_index, save_index
    from engine.model.datamodule import SequenceDataModule
    from engine.model.features import CATEGORICAL_FIELDS
    from engine.model.io import MODEL_FILE, save_model
    from engine.segment import assign, build_hierarchy, level_columns, segment_profiles, spherical_kmeans

    store, _ = load_store(EventLogSpec(str(events)))
    dm = SequenceDataModule(store, batch_size=32, horizon_days=HORIZON_DAYS)
    model_config = {
        "_target_": "engine.model.module.CustomerEncoder",
        "dim": 32,
        "out_dim": 16,
        "encoder": {"_target_": "engine.model.encoder.GRUEncoder", "_partial_": True},
        "forecast_weight": 1.0,
    }
    vocab_sizes = [len(store.vocabs[f]) for f in CATEGORICAL_FIELDS]
    model = instantiate(model_config, vocab_sizes=vocab_sizes, spend_scale=dm.spend_scale, unit=dm.unit)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    arrays = embed_base(trainer, model, dm, out.parent / "embed-parts")
    embeddings = arrays["embedding"]
    centroids, _ = spherical_kmeans(embeddings, K, seed=0)
    labels, similarity = assign(embeddings, centroids)
    hierarchy = build_hierarchy(centroids, np.bincount(labels, minlength=K))
    arrays.update(Process.from_columns(arrays, model.decay).table(HORIZON_DAYS, 0.1))
    forecast = forecast_table(store.customer_ids, arrays)
    summary = customer_summary(store, dm.as_of)
    for name in ("expected_purchases", "expected_spend", "p_alive", "lifetime_value"):
        summary = summary.append_column(name, forecast[name])
    with BundleWriter(out) as bundle:
        save_model(model, model_config, store.vocabs, bundle.path / MODEL_FILE)
        bundle.write_table("embeddings.parquet", embeddings_table(store.customer_ids, embeddings))
        bundle.write_table("forecast.parquet", forecast)
        segments = {"customer_id": store.customer_ids, "segment": labels, "similarity": similarity}
        bundle.write_table("segments.parquet", pa.table({**segments, **level_columns(labels, hierarchy)}))
        np.save(bundle.path / "centroids.npy", centroids)
        (bundle.path / "hierarchy.json").write_text(json.dumps(hierarchy.to_dict()))
        bundle.write_table("profiles.parquet", segment_profiles(labels, K, summary.drop(["customer_id"])))
        save_index(build_index(embeddings, np.arange(len(embeddings))), bundle.path / "index.faiss")
        store.save(bundle.path / "store")
        bundle.manifest.update(
            counts={"customers": store.n_customers, "events": store.n_events, "segments": K},
            k=K,
            as_of=dm.as_of,
            horizon_days=HORIZON_DAYS,
            forecast={"horizon_days": HORIZON_DAYS, "decay_per_day": model.decay, "discount_rate": 0.1,
                      "unit": dm.unit},
            config={"loader": {"predict_max_len": 256}},
        )
    return out


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A real bundle of 300 synthetic customers. Read-only: copy it (see ``writable``) before writing."""
    root = tmp_path_factory.mktemp("service")
    events = write(SyntheticConfig(n_customers=N_CUSTOMERS, seed=0), root / "data")
    return _pipeline_bundle(events, root / "bundle") or _parts_bundle(events, root / "bundle")


@pytest.fixture
def writable(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle, for tests that erase or reload."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


class Server:
    """The app under uvicorn in a background thread on 127.0.0.1, on a free port; a context manager."""

    def __init__(self, bundle: Path, token: str | None = None, open_writes: bool = False, **options):
        self.app = create_app(bundle, token=token, open_writes=open_writes, **options)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=5)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server at {self.url} did not answer /health")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="session")
def serve():
    """serve(bundle, token=None, open_writes=False, **create_app options): a Server over that bundle
    directory, as a context manager."""
    return Server


@pytest.fixture(scope="session")
def server(bundle_dir: Path):
    """A read-only server over the session bundle (no token)."""
    with Server(bundle_dir) as running:
        yield running


@pytest.fixture
def client(server: Server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def history():
    """history(store, row) -> that customer's stored events as request events."""
    return stored_events
