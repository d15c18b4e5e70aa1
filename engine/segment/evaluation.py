"""Segment quality, measured: how much of each customer's behaviour after the cutoff the segments explain.

Eta squared (between-segment share of the variance) of post-cutoff spend, log1p spend and purchase count,
for the engine's segments and, in the same run, the segmentations an analyst would use: k-means on log
recency / frequency / monetary (standardised), RFM quantile cells (each of R, F, M split at its median: 8
cells) and 8 tiles of BG/NBD + Gamma-Gamma predicted spend over the same window.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

from engine.data.store import SequenceStore
from engine.forecast import baselines
from engine.forecast.transactions import transaction_unit

log = logging.getLogger(__name__)

NAMES = {
    "engine_k8": "segment-engine, k=8",
    "engine_auto": "segment-engine, automatic k",
    "rfm_kmeans": "k-means on log R, F, M (k=8)",
    "rfm_cells": "RFM quantile cells (2 x 2 x 2)",
    "bgnbd_tiles": "8 tiles of BG/NBD + Gamma-Gamma predicted spend",
}


def eta_squared(labels: np.ndarray, y: np.ndarray) -> float:
    """Between-group sum of squares over the total: the share of y's variance the labels explain."""
    labels, y = np.asarray(labels, np.int64), np.asarray(y, np.float64)
    total = ((y - y.mean()) ** 2).sum()
    if total <= 0:
        return float("nan")
    count = np.bincount(labels)
    sums = np.bincount(labels, weights=y)
    between = (sums[count > 0] ** 2 / count[count > 0]).sum() - len(y) * y.mean() ** 2
    return float(between / total)


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(0)) / np.maximum(x.std(0), 1e-9)).astype(np.float32)


def rfm_kmeans(history: SequenceStore, as_of: int, k: int = 8, seed: int = 0) -> np.ndarray:
    x = _standardise(np.log1p(baselines.rfm_features(baselines.rfm_inputs(history, as_of))))
    km = faiss.Kmeans(x.shape[1], k, seed=seed, niter=50, nredo=5)
    km.train(x)
    return km.index.search(x, 1)[1].ravel()


def rfm_cells(history: SequenceStore, as_of: int) -> np.ndarray:
    x = baselines.rfm_features(baselines.rfm_inputs(history, as_of))
    bins = np.stack([(x[:, j] > np.median(x[:, j])).astype(np.int64) for j in range(3)], 1)
    return bins @ np.array([4, 2, 1])


def tiles(values: np.ndarray, k: int = 8) -> np.ndarray:
    cuts = np.quantile(values, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(cuts, values, side="right")


def evaluate(history: SequenceStore, future: SequenceStore, as_of: int, segmentations: dict[str, np.ndarray],
             seed: int = 0) -> dict:
    """{method: {"spend", "log_spend", "purchases": eta squared, "k": segments, "smallest": share}} for the
    given segmentations (name -> labels aligned with history's rows) and the baselines."""
    truth = baselines.future_truth(future)
    window = (int(future.time_range()[1]) + 1 - as_of) / 86400.0 if future.n_events else 30.0
    labels = dict(segmentations)
    labels["rfm_kmeans"] = rfm_kmeans(history, as_of, seed=seed)
    labels["rfm_cells"] = rfm_cells(history, as_of)
    bg = baselines.bgnbd_gamma_gamma(history, as_of, window, transaction_unit(history))
    if bg is not None:
        labels["bgnbd_tiles"] = tiles(bg["expected_spend"])
    out = {}
    for name, lab in labels.items():
        sizes = np.bincount(lab)
        sizes = sizes[sizes > 0]
        out[name] = {"spend": eta_squared(lab, truth["spend"]), "log_spend": eta_squared(lab, np.log1p(truth["spend"])),
                     "purchases": eta_squared(lab, truth["purchases"]), "k": int(len(sizes)),
                     "smallest": float(sizes.min() / len(lab))}
    log.info("segment evaluation over %.0f days after the cutoff: %s", window, out)
    return out


def markdown(summary: dict) -> str:
    lines = ["| segmentation | k | smallest | eta² spend | eta² log1p spend | eta² purchases |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in summary.items():
        lines.append(f"| {NAMES.get(name, name)} | {r['k']} | {r['smallest']:.1%} | {r['spend']:.3f} | "
                     f"{r['log_spend']:.3f} | {r['purchases']:.3f} |")
    return "\n".join(lines)
