"""Forecasts on the generated log at 10 times the bench's customers: are the ties of bench/results/forecast.md the
sample's?

    python bench/forecast_large.py                       # 20,000 customers, the 3 cutoffs, seeds 0 1 2
    python bench/forecast_large.py --horizons 183 --work DIR

The generator, cutoffs and horizons of `bench/quality.py --suite forecast` on the generated log, with
`--customers` customers; one `train.py stage=evaluate evaluate.sections=[forecast]` run per (cutoff, seed), with
`trainer.max_epochs=1 trainer.limit_train_batches=2` (the head reads the forecast context, not the encoder's
state, so these flags leave the forecast as it is and save the encoder's training). A run whose evaluation.json is
already in --work is read, not rerun. Writes bench/results/forecast_variants/generated_20k.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from forecast_variants import cell as variant_cell  # noqa: E402
from forecast_variants import met  # noqa: E402
from quality import FORECAST_CUTOFFS, mean_sd  # noqa: E402

from engine.forecast.metrics import NAMES  # noqa: E402

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
KEYS = [("mae", "MAE", True), ("rmse", "RMSE", True), ("total_error", "total error", None),
        ("spearman", "Spearman", False), ("auc_buys_again", "AUC buys-again", False),
        ("top10_revenue_capture", "top-10% revenue share", False)]



def cell(k: str, values: list[float]) -> str:
    mu, sd = mean_sd(values)
    return "n/a" if not np.isfinite(mu) else variant_cell(k, (mu, sd))


def evaluation(log: Path, cutoff: str, horizon: int, seed: int, work: Path) -> dict:
    out = work / f"gen-h{horizon}-b{seed}"
    if not (out / "evaluation.json").exists():
        print(f"[{horizon} days after {cutoff}] seed {seed} ...", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "stage=evaluate", f"data.path={log}",
                        f"data.cutoff={cutoff}", f"out_dir={out}", f"seed={seed}", "trainer.enable_progress_bar=false",
                        "evaluate.sections=[forecast]", f"forecast.horizon_days={horizon}", *FAST],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"[{horizon} days after {cutoff}] seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads((out / "evaluation.json").read_text())["forecast"][f"{horizon:g}"]


def section(horizon: int, cutoff: str, runs: list[dict]) -> list[str]:
    lines = [f"## {horizon} days after {cutoff}", "", "| method | " + " | ".join(h for _, h, _ in KEYS) + " |",
             "| --- " * (len(KEYS) + 1) + "|"]
    for m in runs[0]["metrics"]:
        lines.append(f"| {NAMES.get(m, m)} | "
                     + " | ".join(cell(k, [r["metrics"][m].get(k, np.nan) for r in runs]) for k, _, _ in KEYS) + " |")
    params = runs[0]["params"].get("bgnbd_gamma_gamma")
    if params:
        lines += ["", "BG/NBD + Gamma-Gamma (first seed): " + ", ".join(f"{k}={v:.4g}" for k, v in params.items())]
    if all("bgnbd_gamma_gamma" in r["metrics"] for r in runs):
        e = {k: mean_sd([r["metrics"]["neural"][k] for r in runs]) for k, _, _ in KEYS}
        b = {k: mean_sd([r["metrics"]["bgnbd_gamma_gamma"][k] for r in runs]) for k, _, _ in KEYS}
        bounds = {k: np.mean([r["intervals"]["bgnbd_gamma_gamma"][k] for r in runs], axis=0)
                  for k in ("mae", "rmse", "spearman", "top10_revenue_capture")}
        lines.append("")
        for k, label, lower in KEYS:
            verdict = "met" if met(e[k], b[k], lower) else "**not met**"
            if lower is None:
                lines.append(f"- {verdict}: {label} {100 * e[k][0]:+.1f}% within ±10%")
                continue
            if k not in bounds:
                continue
            lo, hi = bounds[k]
            lines.append(f"- {verdict}: {label} "
                         f"{e[k][0]:.3f} ± {e[k][1]:.3f} vs BG/NBD {b[k][0]:.3f}; engine - BG/NBD, 95% over "
                         f"resampled customers [{lo:+.3f}, {hi:+.3f}]")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--horizons", type=int, nargs="+", default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "forecast_large")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "forecast_variants" / "generated_20k.md")
    args = parser.parse_args()
    from engine.data.synthetic import SyntheticConfig, write

    gen = args.work / f"generated-{args.customers}"
    if not (gen / "events.parquet").exists():
        write(SyntheticConfig(n_customers=args.customers, seed=3), gen)
    lines = [f"# The generated log at {args.customers:,} customers: forecasts", "",
             f"Written by `python bench/forecast_large.py {' '.join(sys.argv[1:])}`. The generator (seed 3), cutoffs "
             "and horizons of `bench/quality.py --suite forecast` on the generated log, with "
             f"{args.customers:,} customers in place of 2,000; `train.py stage=evaluate evaluate.sections=[forecast] "
             "data.cutoff=C forecast.horizon_days=H seed=S " + " ".join(FAST) + "`, seeds "
             + ", ".join(map(str, args.seeds)) + "; mean ± sd over the seeds. A baseline missing from a table "
             "could not be fitted on this log (its reason is in the run's log).", ""]
    for cutoff, horizon in FORECAST_CUTOFFS["generated"]:
        if args.horizons and horizon not in args.horizons:
            continue
        runs = [evaluation(gen / "events.parquet", cutoff, horizon, s, args.work) for s in args.seeds]
        lines += section(horizon, cutoff, runs)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
