"""bench/forecast_variants.py: variants scored against BG/NBD with the bench's rule (a margin larger than the spread)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from forecast_variants import tables  # noqa: E402

BG = {"mae": 2.0, "rmse": 3.0, "spearman": 0.70, "top10_revenue_capture": 0.30, "total_error": 0.02}


def runs(maes: list[float], total_error: float = 0.0) -> dict:
    """A forecast.json of one log and horizon: one run per MAE, the engine's other figures better than BG/NBD's."""
    seeds = [{"forecast": {"28": {"metrics": {
        "neural": {"mae": m, "rmse": 2.5, "spearman": 0.8, "top10_revenue_capture": 0.35, "total_error": total_error},
        "bgnbd_gamma_gamma": BG}}}} for m in maes]
    return {"shop": {"2024-01-01/28": seeds}}


def test_a_margin_inside_the_spread_is_no_win_and_totals_must_stay_within_ten_percent():
    lines, counts = tables(runs([1.9, 1.9, 1.9]), {"noisy": runs([1.7, 1.9, 2.1]), "biased": runs([1.9] * 3, 0.2)})
    assert counts == {"default": [5, 5], "noisy": [4, 5], "biased": [4, 5]}
    mae = next(line for line in lines if line.startswith("| MAE"))
    assert mae == "| MAE | 2.000 ± 0.000 | 1.900 ± 0.000 ✓ | 1.900 ± 0.200 ✗ | 1.900 ± 0.000 ✓ |"


def test_the_script_writes_the_table_of_variant_files(tmp_path):
    (tmp_path / "default.json").write_text(json.dumps(runs([1.9, 1.9, 1.9])))
    (tmp_path / "more_pairs.json").write_text(json.dumps(runs([1.8, 1.8, 1.8])))
    out = tmp_path / "variants.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "forecast_variants.py"), str(tmp_path / "more_pairs.json"),
                    "--default", str(tmp_path / "default.json"), "--out", str(out)], check=True, capture_output=True)
    text = out.read_text()
    assert "| more_pairs | 5 of 5 |" in text and "### shop, 28 days after 2024-01-01" in text


def test_the_large_log_section_marks_each_target_beside_its_customer_interval():
    from forecast_large import section

    figures = {"mae": 1.9, "rmse": 2.5, "spearman": 0.8, "top10_revenue_capture": 0.35, "total_error": 0.0,
               "auc_buys_again": 0.9}
    interval = {k: [-0.1, -0.05] for k in ("mae", "rmse")} | {k: [0.01, 0.02] for k in ("spearman", "top10_revenue_capture")}
    run = {"metrics": {"neural": figures, "bgnbd_gamma_gamma": BG | {"auc_buys_again": 0.85}},
           "params": {"bgnbd_gamma_gamma": {"r": 0.5}}, "intervals": {"bgnbd_gamma_gamma": interval}}
    lines = section(28, "2024-12-03", [run, run, run])
    assert "- met: MAE 1.900 ± 0.000 vs BG/NBD 2.000; engine - BG/NBD, 95% over resampled customers [-0.100, -0.050]" in lines
    assert sum(line.startswith("- met") for line in lines) == 5 and "BG/NBD + Gamma-Gamma (first seed): r=0.5" in lines
