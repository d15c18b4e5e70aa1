"""Forecast variants side by side: the default's bench/results/forecast.json beside the forecast.json of variant
runs of `python bench/quality.py --suite forecast --out DIR [overrides]`, per log and horizon, with the targets
against BG/NBD + Gamma-Gamma that each meets (a margin larger than the spread over the seeds, as in
bench/quality.py).

    python bench/forecast_variants.py bench/results/forecast_variants/*.json

Each variant file is named NAME.json; its description is the "variant" entry of bench/results/forecast_variants/
README.md's table (the command, and the code change where one was needed). Writes
bench/results/forecast_variants.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import mean_sd  # noqa: E402

# (figure, label, lower is better); total error is checked as within +-10%
FIGURES = [("mae", "MAE", True), ("rmse", "RMSE", True), ("spearman", "Spearman", False),
           ("top10_revenue_capture", "top-10% revenue share", False), ("total_error", "total error", None)]


def figures(runs: list[dict], horizon: str, method: str) -> dict[str, tuple[float, float]]:
    return {k: mean_sd([r["forecast"][horizon]["metrics"][method][k] for r in runs]) for k, _, _ in FIGURES}


def met(e: tuple[float, float], b: tuple[float, float], lower: bool | None) -> bool:
    if lower is None:
        return abs(e[0]) <= 0.10
    margin = (b[0] - e[0]) if lower else (e[0] - b[0])
    return margin > max(e[1], b[1])  # a margin inside the spread is no win


def cell(k: str, v: tuple[float, float]) -> str:
    mu, sd = v
    if k == "total_error":
        return f"{100 * mu:+.1f}% ± {100 * sd:.1f}"
    if k == "top10_revenue_capture":
        return f"{100 * mu:.1f}% ± {100 * sd:.1f}"
    return f"{mu:.3f} ± {sd:.3f}"


def tables(default: dict, variants: dict[str, dict]) -> tuple[list[str], dict[str, list[int]]]:
    """Markdown lines per (log, horizon) and, per column, [targets met, targets scored]."""
    columns = {"default": default, **variants}
    counts = {name: [0, 0] for name in columns}
    lines = []
    for log, cutoffs in default.items():
        for key, runs in cutoffs.items():
            cutoff, horizon = key.split("/")
            here = {name: d[log][key] for name, d in columns.items() if key in d.get(log, {})}
            lines += [f"### {log}, {horizon} days after {cutoff}", "",
                      "| figure | BG/NBD + Gamma-Gamma | " + " | ".join(here) + " |",
                      "| --- " * (len(here) + 2) + "|"]
            bg = figures(runs, horizon, "bgnbd_gamma_gamma")
            stats = {name: figures(r, horizon, "neural") for name, r in here.items()}
            for k, label, lower in FIGURES:
                cells = []
                for name, s in stats.items():
                    ok = met(s[k], bg[k], lower)
                    counts[name][0] += ok
                    counts[name][1] += 1
                    cells.append(cell(k, s[k]) + (" ✓" if ok else " ✗"))
                lines.append(f"| {label} | {cell(k, bg[k])} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", type=Path, help="NAME.json files of variant runs")
    parser.add_argument("--default", type=Path, default=ROOT / "bench" / "results" / "forecast.json")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "forecast_variants.md")
    args = parser.parse_args()
    default = json.loads(args.default.read_text())
    variants = {p.stem: json.loads(p.read_text()) for p in args.variants}
    body, counts = tables(default, variants)
    seeds = {len(runs) for d in (default, *variants.values()) for c in d.values() for runs in c.values()}
    head = ["# Forecast variants against the default", "",
            f"Written by `python bench/forecast_variants.py {' '.join(str(p) for p in args.variants)}`. Each column: "
            f"the engine's forecast, mean ± sd over {'/'.join(map(str, sorted(seeds)))} seeds, from "
            "`bench/quality.py --suite forecast` runs (what each variant is: bench/results/forecast_variants/README.md). "
            "✓: the issue's target against BG/NBD + Gamma-Gamma is met (lower MAE and RMSE, higher Spearman and "
            "top-10% revenue share, by more than the larger spread; total error within ±10%); ✗: not met.", "",
            "| variant | targets met |", "| --- | --- |"]
    head += [f"| {name} | {m} of {n} |" for name, (m, n) in counts.items()]
    args.out.write_text("\n".join(head + [""] + body))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
