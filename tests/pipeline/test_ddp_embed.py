"""Batch embedding under Lightning DDP with 2 CPU processes (gloo): every customer exactly once, equal to the
single-process embedding."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from engine.bundle.writer import read_embeddings
from tests.conftest import ROOT


@pytest.mark.slow
def test_ddp_embedding_covers_each_customer_once(bundle, tiny_log, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, str(ROOT / "train.py"), "stage=embed", f"bundle={bundle}", f"data.path={tiny_log}",
           f"out_dir={out}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.precision=32-true", "loader.predict_batch_size=32", "segment.k=4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "merged 2 part(s)" in done.stdout + done.stderr

    ids, ddp = read_embeddings(out / "embeddings.parquet")
    single_ids, single = read_embeddings(bundle / "embeddings.parquet")
    assert len(set(ids.to_pylist())) == len(ids) == len(single_ids)
    assert ids.to_pylist() == single_ids.to_pylist()
    assert np.allclose(ddp, single, atol=1e-5)
