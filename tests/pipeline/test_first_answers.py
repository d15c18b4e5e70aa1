"""train.py answers --help and bad configs at once, before importing torch, Lightning or FAISS: its own help
(stages, groups, main keys), "did you mean" for a mistyped key, and the key named for a value of the wrong type."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.config import ConfigError, unknown_keys, validate
from tests.conftest import ROOT, compose_config


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_stages_groups_and_main_keys_without_importing_torch():
    out = train("--help")
    assert out.returncode == 0, out.stderr
    for text in ("Stages (stage=)", "recommend", "evaluate", "model: gru, transformer", "data.purchase_types",
                 "recommend.new_only", "--cfg job"):
        assert text in out.stdout, text
    probe = subprocess.run([sys.executable, "-c", "import sys, engine.config; print('torch' in sys.modules)"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "False", "the config schema imports torch: --help would wait for it"


def test_a_mistyped_key_gets_did_you_mean_and_nothing_runs():
    out = train("data.pth=events.parquet")
    assert out.returncode != 0 and "data.pth: not a config key; did you mean data.path" in out.stderr
    assert unknown_keys(["recomend.n=3"])[0].startswith("recomend.n: not a config key; did you mean recommend.n ")
    assert unknown_keys(["model.dim=64", "trainer.max_epochs=1", "+trainer.x=1", "model=transformer", "seed=3",
                         "data.columns.customer_id=user_id", "hydra.run.dir=x", "-m"]) == []


@pytest.mark.parametrize("override, message", [
    ("model.dim=abc", "model.dim='abc': expected an integer"),
    ("model.lr=fast", "model.lr='fast': expected a number"),
    ("trainer.max_epochs=x", "trainer.max_epochs='x': expected an integer"),
    ("trainer.enable_progress_bar=maybe", "expected true or false"),
])
def test_a_value_of_the_wrong_type_is_named_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_config([override]))


def test_a_wrong_type_answers_in_one_line_without_importing_torch_lightning_or_faiss():
    probe = ("import runpy, sys\nsys.argv = ['train.py', 'model.dim=abc']\ntry:\n"
             "    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit as e:\n    print(e.code)\n"
             "print([m for m in ('torch', 'pytorch_lightning', 'faiss') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["train.py: model.dim='abc': expected an integer", "[]"], out.stderr
    assert "Traceback" not in out.stderr
