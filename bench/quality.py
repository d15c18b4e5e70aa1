"""Quality on a real log and on the generated one, over several seeds, beside the baselines of the same runs.

    python bench/quality.py                  # Complete Journey (../shared) + the generated log, seeds 0 1 2
    python bench/quality.py --seeds 0 1 2 3 4 --logs completejourney
    python bench/quality.py --suite forecast # forecasts at three cutoffs per log -> bench/results/forecast.md
    python bench/quality.py --suite recommend # recommendations, 4 weeks after a cutoff -> bench/results/recommend.md
    python bench/quality.py --suite attributes # Complete Journey with and without its demographics -> attributes.md

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
# Forecast cutoffs leaving horizons of 4 and 13 weeks and one as long as the history before it (CJ: weeks
# 21-39 after weeks 1-20; its weeks start Monday 00:00 US Eastern = 04:00 UTC; the log ends 2017-09-25T03:55).
FORECAST_CUTOFFS = {
    "completejourney": [("2017-08-28T04:00", 28), ("2017-06-26T04:00", 91), ("2017-05-15T04:00", 133)],
    "generated": [("2024-12-03", 28), ("2024-10-01", 91), ("2024-07-01", 183)],  # the log: 2024, 365 days
}
# Recommendations: the items bought in the 4 weeks after the cutoff (CJ: weeks 36-39 after weeks 1-35).
RECOMMEND_CUTOFFS = {"completejourney": "2017-08-28T04:00", "generated": "2024-12-03"}
RECOMMEND_BASELINES = ("popularity", "repeat", "item_knn")
# Customer attributes: the Complete Journey demographics (a third of the households), with and without
DEMOGRAPHICS = CJ.parent / "demographics.parquet"
ATTRIBUTES = [f"data.attributes.path={DEMOGRAPHICS}", "data.attributes.id_column=household_id",
              "data.attributes.model=true"]
ATTRIBUTE_HORIZONS = (28, 84)  # days after the quality cutoff (2017-07-03; the log ends 84 days later)
FORECAST_BASELINES = ("bgnbd_gamma_gamma", "pareto_nbd", "naive", "rfm_quantile", "zero")
LOOKALIKE_BASELINES = ("tfidf", "tfidf_svd", "tfidf_knn", "activity")
SEGMENT_BASELINES = ("rfm_kmeans", "rfm_cells", "bgnbd_tiles")


def split_log(path: str, cutoff: str):
    """(history store, future store aligned by row, as_of): a log read and split at ``cutoff`` as train.py's
    data.cutoff does it, for the studies that score without retraining (lookalike_scorers.py, segment_value.py)."""
    from hydra import compose, initialize_config_dir

    import engine.config  # noqa: F401  registers the config schema
    from engine.pipeline import load_data

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=[f"data.path={path}", f"data.cutoff={cutoff}"])
    data = load_data(cfg)
    return data.store, data.future, data.as_of


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


def seed_runs(args, work: Path, name: str, label: str, extra: list[str], cutoff: str | None = None) -> list[dict]:
    """One run per seed of args.seeds on log ``name`` (its cutoff, or ``cutoff``), with progress lines."""
    log = dict(LOGS[name])
    if log["path"] is None:
        log["path"] = generated_log(work)
    if cutoff is not None:
        log["cutoff"] = cutoff
    runs = []
    for seed in args.seeds:
        print(f"[{label}] seed {seed} ...", flush=True)
        runs.append(run(log, seed, work / name, extra))
        print(f"[{label}] seed {seed}: {runs[-1]['seconds']:.0f} s", flush=True)
    return runs


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


def forecast_markdown(name: str, log: dict, runs: dict[int, list[dict]], seeds: list[int]) -> tuple[str, list[str]]:
    """The forecast section of a log: per horizon, each method's figures (mean ± sd over the seeds), the
    fitted baseline parameters of the first seed, and the targets against BG/NBD + Gamma-Gamma."""
    from engine.forecast.metrics import COLUMNS, NAMES

    lines = [f"## {log['title']}: forecasts", "",
             f"`train.py stage=evaluate evaluate.sections=[forecast] data.path={display(log['path'])} "
             "data.cutoff=C forecast.horizon_days=H seed=S`, seeds " + ", ".join(map(str, seeds))
             + "; transactions per customer; mean ± standard deviation over the seeds.", ""]
    verdict = []
    for (cutoff, horizon), results in runs.items():
        per = [r["forecast"][f"{horizon:g}"] for r in results]
        methods = list(per[0]["metrics"])
        lines += [f"### {horizon} days after {cutoff} ({np.mean([r['seconds'] for r in results]):.0f} s a run)", "",
                  "| method | " + " | ".join(h for _, h in COLUMNS) + " |", "| --- " * (len(COLUMNS) + 1) + "|"]
        stats = {m: {k: mean_sd([p["metrics"][m][k] for p in per]) for k, _ in COLUMNS} for m in methods}
        for m in methods:
            cells = []
            for k, _ in COLUMNS:
                mu, sd = stats[m][k]
                pct = k in ("total_error", "top10_revenue_capture")
                cells.append("n/a" if not np.isfinite(mu) else
                             (f"{100 * mu:+.1f}% ± {100 * sd:.1f}" if k == "total_error" else
                              f"{100 * mu:.1f}% ± {100 * sd:.1f}" if pct else f"{mu:.3f} ± {sd:.3f}"))
            lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(cells) + " |")
        for b, params in per[0]["params"].items():
            lines.append(f"\n{NAMES.get(b, b)} (seed {seeds[0]}): " + ", ".join(f"{k}={v:.4g}" for k, v in params.items()))
        lines.append("")
        if "bgnbd_gamma_gamma" in stats:
            e, b = stats["neural"], stats["bgnbd_gamma_gamma"]

            def beats(k: str, lower: bool, e=e, b=b) -> bool:
                margin = (b[k][0] - e[k][0]) if lower else (e[k][0] - b[k][0])
                return margin > max(e[k][1], b[k][1])  # a margin inside the spread is no win

            checks = [("MAE", "mae", True), ("RMSE", "rmse", True), ("Spearman", "spearman", False),
                      ("top-10% revenue share", "top10_revenue_capture", False)]
            # the paired bootstrap over customers (engine.forecast.metrics.paired_intervals), bounds averaged over seeds
            bounds = [p.get("intervals", {}).get("bgnbd_gamma_gamma") for p in per]
            for label, k, lower in checks:
                (mu, sd), bm = e[k], b[k][0]
                sample = ""
                if all(bounds):
                    lo, hi = np.mean([x[k] for x in bounds], axis=0)
                    clear = hi < 0 if lower else lo > 0
                    sample = (f"; engine - BG/NBD {mu - bm:+.3f}, 95% over resampled customers [{lo:+.3f}, {hi:+.3f}]"
                              + ("" if clear else ": within the sample's noise"))
                verdict.append(f"- {'met' if beats(k, lower) else '**not met**'}: {name}, {horizon} days: {label} "
                               f"{mu:.3f} ± {sd:.3f} vs BG/NBD {bm:.3f}{sample}")
            te = e["total_error"][0]
            verdict.append(f"- {'met' if abs(te) <= 0.10 else '**not met**'}: {name}, {horizon} days: total error "
                           f"{100 * te:+.1f}% within ±10%")
    return "\n".join(lines), verdict


def attribute_figures(r: dict) -> dict[str, tuple[float, bool]]:
    """{figure: (value, higher is better)} of one evaluation: lookalikes, segments and forecasts."""
    out = {}
    for kind in ("category", "product"):
        e = r["lookalike"]["methods"]["engine"][kind]
        out[f"{kind} lookalike ROC-AUC"] = (e["roc_auc"], True)
        out[f"{kind} lookalike average precision"] = (e["average_precision"], True)
    for name, label in (("engine_k8", "k=8"), ("engine_auto", "automatic k")):
        for fig in ("spend", "log_spend", "purchases"):
            out[f"segments ({label}): eta squared of {fig.replace('_', ' ')}"] = (r["segments"][name][fig], True)
    for horizon in ATTRIBUTE_HORIZONS:
        m = r["forecast"][f"{horizon:g}"]["metrics"]["neural"]
        for key, label, higher in (("mae", "MAE", False), ("rmse", "RMSE", False), ("spearman", "Spearman", True),
                                   ("top10_revenue_capture", "top-10% revenue share", True)):
            out[f"forecast {horizon} days: {label}"] = (m[key], higher)
        out[f"forecast {horizon} days: |total error|"] = (abs(m["total_error"]), False)
    return out


def attributes_suite(args) -> None:
    """Complete Journey at the quality cutoff, each seed trained without and with the demographics (the same
    seeds, the same hour): whether the attributes help each figure by more than the spread."""
    log = LOGS["completejourney"]
    extra = ["evaluate.sections=[lookalike,segments,forecast]",
             f"evaluate.horizons=[{','.join(str(h) for h in ATTRIBUTE_HORIZONS)}]", *args.overrides]
    runs = {}
    if args.from_json:  # the table again from a finished run's figures
        runs = json.loads(args.from_json.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="attributes-") as tmp:
            for variant, more in (("without", []), ("with", ATTRIBUTES)):
                runs[variant] = seed_runs(args, Path(tmp) / variant, "completejourney", f"attributes {variant}",
                                          extra + more)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "attributes.json").write_text(json.dumps(runs, indent=1))
    figs = {v: [attribute_figures(r) for r in rs] for v, rs in runs.items()}
    lines = ["# Customer attributes: do the Complete Journey demographics help?", "",
             "Written by `python bench/quality.py --suite attributes`" + (" (re-tabulated from its "
             "attributes.json)" if args.from_json else "") + ": `train.py stage=evaluate "
             f"data.path={display(log['path'])} data.cutoff={log['cutoff']} "
             f"evaluate.horizons=[{','.join(str(h) for h in ATTRIBUTE_HORIZONS)}] seed=S`, without and with "
             f"`data.attributes.path={display(str(DEMOGRAPHICS))} data.attributes.id_column=household_id "
             "data.attributes.model=true` "
             f"(801 of the 2,444 households have a row), seeds {', '.join(map(str, args.seeds))}; mean ± standard "
             f"deviation over the seeds. A run took {np.mean([r['seconds'] for r in runs['without']]):.0f} s without "
             f"and {np.mean([r['seconds'] for r in runs['with']]):.0f} s with.", "",
             "| figure | without | with | difference | verdict |", "| --- | --- | --- | --- | --- |"]
    helped = hurt = 0
    for name, (_, higher) in figs["without"][0].items():
        (a, a_sd), (b, b_sd) = (mean_sd([f[name][0] for f in figs[v]]) for v in ("without", "with"))
        gain = (b - a) if higher else (a - b)
        verdict = ("helps" if gain > max(a_sd, b_sd) else "hurts" if -gain > max(a_sd, b_sd) else
                   "no difference beyond the spread")
        helped, hurt = helped + (verdict == "helps"), hurt + (verdict == "hurts")
        lines.append(f"| {name} | {a:.4f} ± {a_sd:.4f} | {b:.4f} ± {b_sd:.4f} | {b - a:+.4f} | {verdict} |")
    lines += ["", f"The attributes help {helped} of {len(figs['without'][0])} figures and hurt {hurt} by more than "
              "the spread. " + ("They stay out of the model by default (data.attributes.model=false): they describe "
                                "the segments, and a user may turn them on." if hurt >= helped else
                                "They help more figures than they hurt."), ""]
    text = "\n".join(lines)
    (args.out / "attributes.md").write_text(text)
    print(text)


def forecast_suite(args) -> None:
    sections, verdicts_, raw = [], [], {}
    with tempfile.TemporaryDirectory(prefix="forecast-") as tmp:
        work = Path(tmp)
        for name in args.logs:
            runs = {(cutoff, horizon): seed_runs(args, work, name, f"forecast {name} cutoff {cutoff} ({horizon} days)",
                                                 ["evaluate.sections=[forecast]", f"forecast.horizon_days={horizon}",
                                                  *args.overrides], cutoff)
                    for cutoff, horizon in FORECAST_CUTOFFS[name] if not args.horizons or horizon in args.horizons}
            text, verdict = forecast_markdown(name, LOGS[name], runs, args.seeds)
            sections.append(text)
            verdicts_ += verdict
            raw[name] = {f"{c}/{h}": r for (c, h), r in runs.items()}
    head = ["# Forecasts on real and generated logs", "", "Written by `python bench/quality.py "
            + " ".join(sys.argv[1:]) + "`. One trained model per cutoff answers its horizon; the baselines are "
            "fitted in the same runs on the same history. A margin inside the spread is no win.", ""]
    text = "\n".join(head + sections + ["## Targets (against BG/NBD + Gamma-Gamma)", "", *verdicts_, ""])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "forecast.md").write_text(text)
    (args.out / "forecast.json").write_text(json.dumps(raw, indent=1))
    print(text)


def recommend_markdown(name: str, log: dict, runs: list[dict], seeds: list[int]) -> tuple[str, list[str]]:
    """A log's recommendation table (mean ± sd over the seeds) and the issue's targets."""
    from engine.recommend.evaluation import METRICS, NAMES

    per = [r["recommend"]["methods"] for r in runs]
    stats = {m: {k: mean_sd([p[m][k] for p in per]) for k in METRICS} for m in per[0]}
    lines = [f"## {log['title']}: recommendations", "",
             f"`train.py stage=evaluate evaluate.sections=[recommend] data.path={display(log['path'])} "
             f"data.cutoff={RECOMMEND_CUTOFFS[name]} seed=S`, seeds {', '.join(map(str, seeds))}; the items each "
             f"customer bought in the {runs[0]['recommend']['horizon_days']:g} days after the cutoff, over the "
             f"{per[0]['engine']['customers']} customers who bought any ({per[0]['engine']['new_customers']} bought "
             f"an item new to them); mean ± standard deviation over the seeds; "
             f"{np.mean([r['seconds'] for r in runs]):.0f} s a run.", "",
             "| method | " + " | ".join(METRICS) + " |", "| --- " * (len(METRICS) + 1) + "|"]
    for m, figs in stats.items():
        lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(f"{mu:.4f} ± {sd:.4f}" for mu, sd in figs.values()) + " |")
    verdict = []
    e = stats["engine"]
    for metric, against in (("recall@20", RECOMMEND_BASELINES), ("ndcg@20", RECOMMEND_BASELINES),
                            ("new_recall@20", ("popularity", "item_knn"))):
        for b in against:
            margin = e[metric][0] - stats[b][metric][0]
            ok = margin > max(e[metric][1], stats[b][metric][1])  # a margin inside the spread is no win
            verdict.append(f"- {'met' if ok else '**not met**'}: {name}: {metric} {e[metric][0]:.4f} ± "
                           f"{e[metric][1]:.4f} vs {NAMES[b]} {stats[b][metric][0]:.4f} ({margin:+.4f})")
    return "\n".join(lines + [""]), verdict


def recommend_suite(args) -> None:
    sections, verdicts_, raw = [], [], {}
    with tempfile.TemporaryDirectory(prefix="recommend-") as tmp:
        work = Path(tmp)
        for name in args.logs:
            runs = seed_runs(args, work, name, f"recommend {name}", ["evaluate.sections=[recommend]", *args.overrides],
                             RECOMMEND_CUTOFFS[name])
            text, verdict = recommend_markdown(name, LOGS[name], runs, args.seeds)
            sections.append(text)
            verdicts_ += verdict
            raw[name] = runs
    head = ["# Recommendations on real and generated logs", "", "Written by `python bench/quality.py "
            + " ".join(sys.argv[1:]) + "`. The baselines score the same candidates in the same runs: every item "
            "a customer bought (up to 300) and the 100 most bought items are among them, so the popularity and "
            "repeat lists are those over the whole catalogue. A margin inside the spread is no win.", ""]
    text = "\n".join(head + sections + ["## Targets", "", *verdicts_, ""])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recommend.md").write_text(text)
    (args.out / "recommend.json").write_text(json.dumps(raw, indent=1))
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--suite", choices=["quality", "forecast", "recommend", "attributes"], default="quality",
                        help="quality: lookalikes and segments (quality.md); forecast: forecasts (forecast.md); "
                        "recommend: recommendations (recommend.md)")
    parser.add_argument("--horizons", type=int, nargs="+", default=None, help="forecast: only these horizons "
                        "(days) of each log's cutoffs")
    parser.add_argument("--from-json", type=Path, default=None, help=argparse.SUPPRESS)  # attributes: re-tabulate
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides (a variant to compare)")
    args = parser.parse_args()
    if args.suite == "forecast":
        return forecast_suite(args)
    if args.suite == "recommend":
        return recommend_suite(args)
    if args.suite == "attributes":
        return attributes_suite(args)
    sections, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        work = Path(tmp)
        for name in args.logs:
            runs = seed_runs(args, work, name, f"quality {name}", args.overrides)
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
