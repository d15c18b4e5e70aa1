"""stage=evaluate: lookalike and forecast quality on the events after data.cutoff, as tables."""

from __future__ import annotations

import html
import json
import logging

import numpy as np
from omegaconf import DictConfig, OmegaConf

from engine.bundle.writer import BundleWriter
from engine.forecast import baselines
from engine.forecast import metrics as forecast_metrics
from engine.forecast.process import Process
from engine.index import evaluation as lookalike_evaluation
from engine.index.signature import UNTUNED, Weights
from engine.segment.figures import cumulative_revenue_html

log = logging.getLogger(__name__)


def tuning_line(entry: dict | None, weights: Weights) -> str:
    """The line under the lookalike table that says how the default scorer was weighed (the manifest's
    "lookalike" entry, engine/index/tuning.py), or nothing."""
    if not entry:
        return ""
    if entry.get("roc_auc") is None:
        return f"\n\nThe default scorer's weights: {weights} ({entry['reason']}).\n"
    return (f"\n\nThe default scorer's weights: {weights}, {entry['reason']} before the cutoff (ROC-AUC "
            f"{entry['roc_auc']:.3f} there on {entry['tasks']} tasks, {entry['default_roc_auc']:.3f} untuned).\n")


def evaluate_run(cfg: DictConfig, bundle: BundleWriter, data, arrays: dict[str, np.ndarray],
                 labels: np.ndarray, process: Process | None = None, unit: str = "basket",
                 recommender=None) -> None:
    """Score lookalikes, segments (``labels``: the run's own, and k=8) and forecasts on the events after the
    cutoff, beside the baselines computed in the same run; print the tables, keep them in the bundle
    (evaluation.json, evaluation.md, the report)."""
    from engine.pipeline import segment
    from engine.segment import evaluation as segment_evaluation

    e = cfg.evaluate
    summary, tables = {}, {}
    if "lookalike" in e.sections:
        entry = bundle.manifest.get("lookalike")  # the weights the pipeline tuned and the bundle serves
        weights = Weights.from_dict(entry["weights"]) if entry else UNTUNED
        summary["lookalike"] = lookalike_evaluation.evaluate(
            data.store, data.future, arrays["embedding"], data.as_of, arrays.get("sequence"), e.lookalike_tasks,
            e.min_buyers, cfg.seed, weights)
        tables["Lookalike audiences (categories and products bought after the cutoff by 2-30% of customers; "
               "half the buyers as seeds)"] = (lookalike_evaluation.markdown(summary["lookalike"])
                                               + tuning_line(entry, weights))
    if "segments" in e.sections:
        segmentations = {"engine_k8": segment(OmegaConf.merge(cfg, {"segment": {"k": 8}}), arrays["embedding"])[1],
                         "engine_auto": labels}
        summary["segments"] = segment_evaluation.evaluate(data.store, data.future, data.as_of, segmentations,
                                                          cfg.seed)
        tables["Segments: share of the variance after the cutoff they explain"] = \
            segment_evaluation.markdown(summary["segments"])
    if recommender is not None and "recommend" in e.sections:
        from engine.recommend import evaluation as recommend_evaluation

        horizon = cfg.recommend.horizon_days
        summary["recommend"] = recommend_evaluation.evaluate_recommender(
            recommender, data.store, data.future, data.as_of, arrays.get("sequence"), horizon)
        tables[f"Recommendations: the items customers bought in the {horizon:g} days after the cutoff"] = \
            recommend_evaluation.markdown(summary["recommend"]["methods"])
    figures = {}
    if process is not None and "forecast" in e.sections:
        summary["forecast"] = {}
        for horizon in cfg.evaluate.horizons or [cfg.forecast.horizon_days]:
            result = forecast_evaluation(data, process, float(horizon), unit)
            spend = result.pop("spend")
            summary["forecast"][f"{horizon:g}"] = result
            heading = (f"Forecast of the {horizon:g} days after the cutoff: transactions ({unit}s) per customer, "
                       f"{data.store.n_customers} customers")
            tables[heading] = forecast_metrics.markdown(result["metrics"])
            if result["params"]:
                tables[heading] += "\n\nFitted baselines: " + "; ".join(
                    f"{forecast_metrics.NAMES.get(k, k)} {v}" for k, v in result["params"].items())
            for name, interval in result["intervals"].items():
                tables[heading] += (f"\n\nsegment-engine minus {forecast_metrics.NAMES.get(name, name)}, 95% interval "
                                    "over resampled customers: " + forecast_metrics.interval_text(interval))
            curves = {k: v for k, v in spend["predicted"].items() if k in ("neural", "bgnbd_gamma_gamma")}
            figures[f"Cumulative revenue, {horizon:g} days: the engine's ranking against BG/NBD"] = \
                cumulative_revenue_html(curves, spend["actual"], forecast_metrics.NAMES, horizon)
    (bundle.path / "evaluation.json").write_text(json.dumps(summary, indent=1))
    (bundle.path / "evaluation.md").write_text("\n\n".join(f"## {k}\n\n{v}" for k, v in tables.items()) + "\n")
    bundle.extra_tables = tables
    bundle.extra_html = figures
    for heading, table in tables.items():
        log.info("%s\n%s", heading, table)


def forecast_evaluation(data, process: Process, horizon_days: float, unit: str) -> dict:
    """The engine's forecast for the horizon beside the baselines, all fitted on the history, scored on
    [cutoff, cutoff + horizon): {"metrics": {method: figures}, "params": {baseline: fitted parameters}}."""
    until = data.as_of + int(horizon_days * 86400)
    last = int(np.asarray(data.future.columns["ts"]).max()) if data.future.n_events else data.as_of
    if last + 1 < until - 86400:
        log.warning("forecast evaluation over %g days: the log ends %.1f days after the cutoff, so the later "
                    "part of the horizon has no events to score", horizon_days, (last + 1 - data.as_of) / 86400)
    truth = baselines.future_truth(data.future.mask_events(np.asarray(data.future.columns["ts"]) < until), unit)
    answer = process.answer(horizon_days)
    results = {"neural": {k: answer[k] for k in ("expected_purchases", "expected_spend", "p_buy")}}
    results.update(baselines.all_baselines(data.store, data.as_of, horizon_days, unit))
    params = {name: pred.pop("params") for name, pred in results.items() if "params" in pred}
    intervals = {}  # the baseline the targets name; results lack it when lifetimes could not fit
    if "bgnbd_gamma_gamma" in results:
        intervals["bgnbd_gamma_gamma"] = forecast_metrics.paired_intervals(
            results["neural"], results["bgnbd_gamma_gamma"], truth)
    return {"metrics": forecast_metrics.compare(results, truth), "params": params, "intervals": intervals,
            "spend": {"actual": truth["spend"], "predicted": {k: v["expected_spend"] for k, v in results.items()}}}


def markdown_to_html(table: str) -> str:
    """A pipe table (as printed) as an HTML table, escaped."""
    lines = [line for line in table.splitlines() if line.startswith("|") and "---" not in line]
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
