"""Quality on a real log and on the generated one, over several seeds, beside the baselines of the same runs.

    python bench/quality.py                  # Complete Journey (../shared) + the generated log, seeds 0 1 2
    python bench/quality.py --seeds 0 1 2 3 4 --logs completejourney

Each (log, seed) is one user-level run, `train.py stage=evaluate data.path=LOG data.cutoff=T` with the
defaults (nothing tuned per log), which trains before the cutoff and scores after it. The seed moves the
training, the lookalike tasks drawn and their seed/target split. Writes bench/results/quality.md (mean and
spread per figure, and whether the engine beats every baseline by more than the spread) and quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.index.evaluation import METHOD_NAMES  # noqa: E402
from engine.segment.evaluation import NAMES as SEGMENT_NAMES  # noqa: E402

CJ = ROOT.parent / "shared" / "data" / "completejourney" / "events.parquet"
LOGS = {
    # weeks 1-26 to train, weeks 27-39 to score (the README of the data: weeks start on Monday)
    "completejourney": {"path": str(CJ), "cutoff": "2017-07-03", "title": "Complete Journey (grocery, real)"},
    "generated": {"path": None, "cutoff": "2024-11-01", "title": "generated log (2,000 customers)"},
}
LOOKALIKE_BASELINES = ("tfidf", "tfidf_svd", "tfidf_knn", "activity")
SEGMENT_BASELINES = ("rfm_kmeans", "rfm_cells", "bgnbd_tiles")


def generated_log(work: Path) -> str:
    from engine.data.synthetic import SyntheticConfig, write

    out = work / "generated"
    if not (out / "events.parquet").exists():
        write(SyntheticConfig(n_customers=2000, seed=3), out)
    return str(out / "events.parquet")


def run(log: dict, seed: int, work: Path, extra: list[str]) -> dict:
    out = work / f"bundle-{seed}"
    cmd = [sys.executable, str(ROOT / "train.py"), "stage=evaluate", f"data.path={log['path']}",
           f"data.cutoff={log['cutoff']}", f"out_dir={out}", f"seed={seed}", "trainer.enable_progress_bar=false",
           "hydra/job_logging=disabled", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    result = json.loads((out / "evaluation.json").read_text())
    result["seconds"] = time.perf_counter() - start
    return result


def display(path: str | None) -> str:
    """A log's path as the README shows it: relative to the repository, or what generates it."""
    if path is None:
        return "(python -m engine.data.synthetic --customers 2000 --seed 3)"
    return os.path.relpath(path, ROOT)


def mean_sd(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def figures(runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """{row: {figure: (mean, sd)}} over the runs: lookalike rows per method and kind, segment rows."""
    rows: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for method, kinds in r["lookalike"]["methods"].items():
            for kind in ("category", "product"):
                if kind in kinds:
                    for fig in ("roc_auc", "average_precision", "precision_at_size"):
                        rows.setdefault(f"lookalike/{kind}/{method}", {}).setdefault(fig, []).append(kinds[kind][fig])
        for name, s in r["segments"].items():
            for fig in ("spend", "log_spend", "purchases", "k", "smallest"):
                rows.setdefault(f"segments/{name}", {}).setdefault(fig, []).append(s[fig])
    return {row: {fig: mean_sd(v) for fig, v in figs.items()} for row, figs in rows.items()}


def verdicts(f: dict) -> list[str]:
    """The issue's targets, each with the figures it rests on."""
    out = []

    def line(ok: bool, text: str) -> str:
        return f"- {'met' if ok else '**not met**'}: {text}"

    for kind in ("category", "product"):
        e = f[f"lookalike/{kind}/engine"]
        (auc, auc_sd), (ap, ap_sd) = e["roc_auc"], e["average_precision"]
        best = max(LOOKALIKE_BASELINES, key=lambda m: f[f"lookalike/{kind}/{m}"]["roc_auc"][0])
        b_auc = f[f"lookalike/{kind}/{best}"]["roc_auc"][0]
        o_auc = f[f"lookalike/{kind}/oracle"]["roc_auc"][0]
        out.append(line(auc > o_auc, f"{kind} lookalike ROC-AUC {auc:.3f} ± {auc_sd:.3f} above the oracle's {o_auc:.3f}"))
        out.append(line(auc - b_auc >= 0.05, f"{kind} lookalike ROC-AUC {auc - b_auc:+.3f} over the best other "
                        f"baseline ({METHOD_NAMES[best]}, {b_auc:.3f}); target +0.05"))
        best_ap = max((*LOOKALIKE_BASELINES, "oracle"), key=lambda m: f[f"lookalike/{kind}/{m}"]["average_precision"][0])
        b_ap = f[f"lookalike/{kind}/{best_ap}"]["average_precision"][0]
        out.append(line(ap > b_ap, f"{kind} lookalike average precision {ap:.3f} ± {ap_sd:.3f} above every "
                        f"baseline (best: {METHOD_NAMES[best_ap]}, {b_ap:.3f})"))
    for fig, label in (("spend", "spend"), ("log_spend", "log1p spend"), ("purchases", "purchases")):
        e, e_sd = f["segments/engine_k8"][fig]
        present = [m for m in SEGMENT_BASELINES if f"segments/{m}" in f]
        best = max(present, key=lambda m: f[f"segments/{m}"][fig][0])
        b = f[f"segments/{best}"][fig][0]
        out.append(line(e > b, f"segments at k=8: eta² of post-cutoff {label} {e:.3f} ± {e_sd:.3f} above every "
                        f"baseline (best: {SEGMENT_NAMES[best]}, {b:.3f})"))
    k, _ = f["segments/engine_auto"]["k"]
    small, _ = f["segments/engine_auto"]["smallest"]
    out.append(line(k >= 5 and small >= 0.01, f"automatic k: {k:.1f} segments on average, smallest {small:.1%} of the base"))
    return out


def markdown(name: str, log: dict, runs: list[dict], seeds: list[int]) -> str:
    f = figures(runs)
    fmt = lambda ms: f"{ms[0]:.3f} ± {ms[1]:.3f}"  # noqa: E731
    lines = [f"## {log['title']}", "",
             f"`train.py stage=evaluate data.path={display(log['path'])} data.cutoff={log['cutoff']} seed=S`, "
             f"seeds {', '.join(map(str, seeds))}; mean ± standard deviation over the seeds; "
             f"{np.mean([r['seconds'] for r in runs]):.0f} s a run on this machine.", "",
             "### Lookalike audiences (half of each category's or product's later buyers are the seeds)", "",
             "| method | kind | ROC-AUC | average precision | precision at audience size |", "| --- | --- | --- | --- | --- |"]
    for kind in ("category", "product"):
        for method in METHOD_NAMES:
            key = f"lookalike/{kind}/{method}"
            if key in f:
                r = f[key]
                lines.append(f"| {METHOD_NAMES[method]} | {kind} | {fmt(r['roc_auc'])} | {fmt(r['average_precision'])} "
                             f"| {fmt(r['precision_at_size'])} |")
    lines += ["", "### Segments: share of the post-cutoff variance explained (eta squared)", "",
              "| segmentation | k | smallest segment | spend | log1p spend | purchases |", "| --- | --- | --- | --- | --- | --- |"]
    for name_ in SEGMENT_NAMES:
        key = f"segments/{name_}"
        if key in f:
            r = f[key]
            lines.append(f"| {SEGMENT_NAMES[name_]} | {r['k'][0]:.1f} | {r['smallest'][0]:.1%} | {fmt(r['spend'])} | "
                         f"{fmt(r['log_spend'])} | {fmt(r['purchases'])} |")
    lines += ["", "### Targets", "", *verdicts(f), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides (a variant to compare)")
    args = parser.parse_args()
    sections, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        work = Path(tmp)
        for name in args.logs:
            log = dict(LOGS[name])
            if log["path"] is None:
                log["path"] = generated_log(work)
            runs = []
            for seed in args.seeds:
                print(f"[quality] {name} seed {seed} ...", flush=True)
                runs.append(run(log, seed, work / name, args.overrides))
                print(f"[quality] {name} seed {seed}: {runs[-1]['seconds']:.0f} s", flush=True)
            sections.append(markdown(name, LOGS[name], runs, args.seeds))
            raw[name] = runs
    args.out.mkdir(parents=True, exist_ok=True)
    head = ["# Quality on real and generated logs", "", "Written by `python bench/quality.py "
            + " ".join(sys.argv[1:]) + "`. Baselines are computed in the same runs; a margin inside the spread is "
            "no win.", ""]
    text = "\n".join(head + sections)
    (args.out / "quality.md").write_text(text)
    (args.out / "quality.json").write_text(json.dumps(raw, indent=1))
    print(text)


if __name__ == "__main__":
    main()
