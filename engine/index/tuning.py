"""The signature lookalike's weights, chosen on each user's own history (engine.index.signature.Weights).

Which views of "customers like these" help depends on the log: on the real grocery log a three-feature
signature with the low-rank view, on the generated log a ten-feature signature with the TF-IDF item profile;
fixed, each loses on the other log (bench/results/lookalike_scorers*.md). So at training time ``tune`` holds
back the history's last quarter (two weeks to thirteen), builds the features on what comes before it, and
poses engine.index.evaluation's tasks there: for categories and products bought in the window by 2-30% of
the customers, half their buyers are the seeds and the rest must be found. Each weighting of TUNE_GRID ranks
the customers for every task; the best mean ROC-AUC over categories and products wins if it beats the
untuned weighting by two standard errors of their paired difference over the tasks, else the untuned one
stays (as it does for a history under four weeks or one with under TUNE_MIN_TASKS tasks). On logs of random
purchases the best of 36 leads by more than one standard error three times in four (its lead is luck), by
two once in four; on both logs of bench/quality.py the weights chosen are the same under either rule.

The encoder's vector term (signature.VECTOR_WEIGHT) is left out of the tuning: the encoder has seen the
held-back window. The ROC-AUC kept in the manifest is the one the weights were chosen on, so it reads a
little high; bench/quality.py measures them after a cutoff.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from engine.data.store import SequenceStore
from engine.index.evaluation import lookalike_tasks
from engine.index.lookalike import roc_auc
from engine.index.signature import DAY, UNTUNED, SignatureFeatures, Weights, combine, score_parts

TUNE_GRID = tuple(Weights(top, regression, profile, lowrank) for top in (3, 10) for regression in (0.1, 0.2, 0.4)
                  for profile in (0.0, 0.1, 0.2) for lowrank in (0.0, 0.2))
TUNE_MIN_TASKS = 10  # fewer categories and products bought in the held-back window: keep UNTUNED
TUNE_MAX_CUSTOMERS = 50_000  # tuning reads a sample of a larger base


@dataclass
class Tuning:
    """``tune``'s answer: the weights, and what they were chosen on (the manifest's "lookalike" entry)."""

    weights: Weights
    reason: str
    window_days: float = 0.0
    customers: int = 0
    tasks: int = 0
    roc_auc: float | None = None  # of the weights chosen, on the tasks they were chosen on
    default_roc_auc: float | None = None  # of UNTUNED, on the same tasks

    def to_dict(self) -> dict:
        return {**asdict(self), "weights": self.weights.to_dict()}


def held_back(store: SequenceStore, as_of: int, seed: int = 0):
    """(history, window, cutoff, days) or None for a history under 28 days: the customers with events before the
    last quarter of the history (two weeks to thirteen; at most TUNE_MAX_CUSTOMERS of them, at random), their
    events before it and their events in it, aligned by row."""
    first = store.time_range()[0]
    span = (as_of - first) / DAY
    if store.n_events == 0 or span < 28:
        return None
    days = float(np.clip(span / 4, 14, 91))
    cutoff = int(as_of - days * DAY)
    history = store.before(cutoff)
    rows = np.flatnonzero(history.lengths() > 0)
    if len(rows) > TUNE_MAX_CUSTOMERS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, TUNE_MAX_CUSTOMERS, replace=False))
    return history.take(rows), store.after(cutoff, as_of).take(rows), cutoff, days


def tune(store: SequenceStore, as_of: int, seed: int = 0, per_kind: int = 25, min_buyers: int = 10,
         grid: tuple[Weights, ...] = TUNE_GRID, standard_errors: float = 2.0) -> Tuning:
    """The weighting of UNTUNED and ``grid`` that finds the held-back window's buyers best, if it leads UNTUNED by
    ``standard_errors`` standard errors (see the module)."""
    split = held_back(store, as_of, seed)
    if split is None:
        span = (as_of - store.time_range()[0]) / DAY if store.n_events else 0.0
        return Tuning(UNTUNED, f"a history of {span:.0f} days (under 28) is too short to hold a window back")
    history, window, cutoff, days = split
    tasks = lookalike_tasks(history, window, per_kind, min_buyers=min_buyers, seed=seed)
    base = dict(window_days=days, customers=history.n_customers, tasks=len(tasks))
    if len(tasks) < TUNE_MIN_TASKS:
        return Tuning(UNTUNED, f"{len(tasks)} categories and products were bought by 2-30% of the customers in "
                      f"the last {days:.0f} days (under {TUNE_MIN_TASKS})", **base)
    features = SignatureFeatures.from_store(history, cutoff, weights=None)  # both factorisations
    grid = (UNTUNED, *[w for w in grid if w != UNTUNED])  # first: it wins ties
    tops = sorted({w.top for w in grid})
    auc = np.zeros((len(grid), len(tasks)))
    for t, task in enumerate(tasks):  # a loop over tuning tasks, not customers
        candidate = np.ones(features.n, dtype=bool)
        candidate[task["seeds"]] = False
        positive = np.zeros(features.n, dtype=bool)
        positive[task["targets"]] = True
        parts = score_parts(features, task["seeds"], tops, seed=seed)
        auc[:, t] = [roc_auc(combine(parts, w)[candidate], positive[candidate]) for w in grid]
    # categories and products count alike, however many of each the window offers
    kinds = Counter(task["kind"] for task in tasks)
    per_task = np.array([1.0 / (len(kinds) * kinds[task["kind"]]) for task in tasks])
    mean = auc @ per_task
    best = int(np.argmax(mean))
    lead = auc[best] - auc[0]
    stderr = np.sqrt(np.sum(per_task**2 * (lead - lead @ per_task) ** 2) * len(lead) / max(len(lead) - 1, 1))
    if best and lead @ per_task < standard_errors * stderr:
        return Tuning(UNTUNED, f"no weighting beat the untuned one by {standard_errors:g} standard errors "
                      f"({stderr:.4f} each) on the last {days:.0f} days of the history",
                      roc_auc=float(mean[0]), default_roc_auc=float(mean[0]), **base)
    return Tuning(grid[best], f"the best of {len(grid)} weightings on the last {days:.0f} days of the history",
                  roc_auc=float(mean[best]), default_roc_auc=float(mean[0]), **base)
