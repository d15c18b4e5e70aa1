"""bench/gpu.py, the prepared device benchmark, runs end to end on the CPU at smoke sizes (so it never reaches
a lent GPU broken), and the CUDA path itself: trainer=gpu trains, embeds and writes a bundle (gpu marker)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import FAST, ROOT, compose_config, run

PHASES = ["data", "tests", "training", "embedding", "equality", "kmeans", "lookalike", "end_to_end"]


def test_smoke_writes_every_phase_and_passes_its_checks(tmp_path):
    committed = ROOT / "bench" / "results" / "gpu.md"
    before = committed.stat().st_mtime if committed.exists() else None
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads((tmp_path / "gpu.json").read_text())
    assert list(result["phases"]) == PHASES
    assert {name: p["status"] for name, p in result["phases"].items()} == dict.fromkeys(PHASES, "ok")
    assert result["checks"] and all(c["passed"] for c in result["checks"]), result["checks"]
    assert {c["check"].split(":")[0] for c in result["checks"]} >= {
        "gpu-marker tests pass", "device 32-true vs CPU fp32", "device bf16-mixed vs CPU fp32"}
    customers = result["phases"]["data"]["figures"]["customers"]
    assert result["phases"]["end_to_end"]["figures"]["customers"] == customers
    assert len(result["targets"]) == 5 and all(t["verdict"].startswith("not measured") for t in result["targets"])

    text = (tmp_path / "gpu.md").read_text()
    assert all(f"| {name} | ok |" in text for name in PHASES)
    assert (committed.stat().st_mtime if committed.exists() else None) == before, "it writes only to --out"


@pytest.mark.gpu
def test_trainer_gpu_writes_a_bundle_that_embeds_as_on_the_cpu(tiny_log, tmp_path):
    """trainer=gpu (bf16-mixed, cuDNN GRU over packed sequences, pinned batches), then the bundle's model
    embeds its customers on the GPU (fp32) as on the CPU."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from engine import pipeline
    from engine.model.io import MODEL_FILE, load_model

    bundle = run(pipeline.run_all, [f"data.path={tiny_log}", f"out_dir={tmp_path / 'bundle'}", "trainer=gpu"])
    model, payload = load_model(bundle / MODEL_FILE)
    embedded = []
    for trainer in (["trainer=cpu"], ["trainer=gpu", "trainer.precision=32-true"]):
        cfg = compose_config(FAST + [f"data.path={tiny_log}", f"out_dir={tmp_path / 'again'}", *trainer])
        data = pipeline.load_data(cfg, vocabs=payload["vocabs"])
        embedded.append(pipeline.embed(cfg, model, data, payload["hparams"]["spend_scale"])["embedding"])
    cpu, gpu = embedded
    assert np.all(np.sum(cpu * gpu, axis=1) > 0.999)
