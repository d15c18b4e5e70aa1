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
from engine.index import evaluation as lookalike_evaluation

log = logging.getLogger(__name__)


def evaluate_run(cfg: DictConfig, bundle: BundleWriter, data, arrays: dict[str, np.ndarray],
                 labels: np.ndarray) -> None:
    """Score lookalikes, segments (``labels``: the run's own, and k=8) and forecasts on the events after the
    cutoff, beside the baselines computed in the same run; print the tables, keep them in the bundle
    (evaluation.json, evaluation.md, the report)."""
    from engine.pipeline import segment
    from engine.segment import evaluation as segment_evaluation

    e = cfg.evaluate
    summary = {"lookalike": lookalike_evaluation.evaluate(
        data.store, data.future, arrays["embedding"], data.as_of, arrays.get("sequence"), e.lookalike_tasks,
        e.min_buyers, cfg.seed)}
    tables = {"Lookalike audiences (categories and products bought after the cutoff by 2-30% of customers; "
              "half the buyers as seeds)": lookalike_evaluation.markdown(summary["lookalike"])}
    segmentations = {"engine_k8": segment(OmegaConf.merge(cfg, {"segment": {"k": 8}}), arrays["embedding"])[1],
                     "engine_auto": labels}
    summary["segments"] = segment_evaluation.evaluate(data.store, data.future, data.as_of, segmentations, cfg.seed)
    tables["Segments: share of the variance after the cutoff they explain"] = \
        segment_evaluation.markdown(summary["segments"])
    if "expected_purchases" in arrays:
        horizon = cfg.forecast.horizon_days
        summary["forecast"] = forecast_evaluation(data, arrays, horizon)
        tables[f"Forecast of the {horizon:g} days after the cutoff ({data.store.n_customers} customers)"] = \
            forecast_metrics.markdown(summary["forecast"])
    (bundle.path / "evaluation.json").write_text(json.dumps(summary, indent=1))
    (bundle.path / "evaluation.md").write_text("\n\n".join(f"## {k}\n\n{v}" for k, v in tables.items()) + "\n")
    bundle.extra_tables = tables
    for heading, table in tables.items():
        log.info("%s\n%s", heading, table)


def forecast_evaluation(data, arrays: dict[str, np.ndarray], horizon_days: float) -> dict:
    """The neural forecast beside the baselines, all fitted on the history, scored on [cutoff, cutoff + H)."""
    until = data.as_of + int(horizon_days * 86400)
    truth = baselines.future_truth(data.future.mask_events(np.asarray(data.future.columns["ts"]) < until))
    results = {"neural": {"expected_purchases": arrays["expected_purchases"].astype(np.float64),
                          "expected_spend": arrays["expected_spend"].astype(np.float64),
                          "p_buy": 1.0 - arrays["p_churn"].astype(np.float64)}}
    results.update(baselines.all_baselines(data.store, data.as_of, horizon_days))
    return forecast_metrics.compare(results, truth)


def markdown_to_html(table: str) -> str:
    """A pipe table (as printed) as an HTML table, escaped."""
    lines = [line for line in table.splitlines() if line.startswith("|") and "---" not in line]
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
