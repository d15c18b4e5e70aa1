"""Shared fixtures: small generated logs and Hydra-composed configs for fast end-to-end runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import engine.config  # noqa: F401  registers the schema
from engine.data.synthetic import SyntheticConfig, write

ROOT = Path(__file__).resolve().parents[1]

FAST = [
    "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false", "model.dim=32", "model.out_dim=16", "loader.batch_size=16",
    "loader.predict_batch_size=64", "segment.k=4", "segment.nredo=1", "forecast.head_epochs=2",
]


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="session")
def tiny_log(tmp_path_factory) -> Path:
    """A generated log of 240 customers (about 6k events)."""
    out = tmp_path_factory.mktemp("tiny_log")
    return write(SyntheticConfig(n_customers=240, mean_events=25, seed=1, n_items=300), out)


@pytest.fixture(scope="session")
def other_log(tmp_path_factory) -> Path:
    """A second, different base for the nightly embed (new customers, same catalogue ids)."""
    out = tmp_path_factory.mktemp("other_log")
    return write(SyntheticConfig(n_customers=150, mean_events=20, seed=7, n_items=300), out)


def run(stage_fn, overrides: list[str]):
    """Compose, validate and run one stage of train.py with the fast settings."""
    from engine.config import validate

    cfg = compose_config(FAST + overrides)
    validate(cfg)
    return stage_fn(cfg)


@pytest.fixture(scope="session")
def bundle(tiny_log, tmp_path_factory) -> Path:
    """A complete bundle trained on the tiny log (read-only: copy it before writing)."""
    from engine import pipeline

    out = tmp_path_factory.mktemp("run") / "bundle"
    return run(pipeline.run_all, [f"data.path={tiny_log}", f"out_dir={out}"])
