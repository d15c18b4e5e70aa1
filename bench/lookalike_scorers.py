"""Lookalike scorers on the real log, without training: the default (engine.index.signature) beside the
variants tried to close issue 11's product gap, on the tasks bench/quality.py scores.

    python bench/lookalike_scorers.py                 # Complete Journey at 2017-07-03, task seeds 0 1 2
    python bench/lookalike_scorers.py --seeds 0 1 2 3 4
    python bench/lookalike_scorers.py --log generated  # the generated log of bench/quality.py at 2024-11-01

The signature scorer reads the purchase history only (no encoder), so each variant is scored on the same
tasks in seconds: for categories and products bought after the cutoff by 2-30% of the customers, half the
later buyers are the seeds and the rest must be found among all non-seeds (engine.index.evaluation). The
seed draws the tasks and the SVD. The rows "told the answer" are not scorers: they rank by the customers' true
number of purchases after the cutoff (alone, or beside the signature and the regression), to show how far a
better activity forecast could lift the figure. Writes bench/results/lookalike_scorers.md and .json
(lookalike_scorers_generated.* for the generated log). A variant becomes the default only if it wins on both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality import CJ, LOGS, generated_log, split_log  # noqa: E402

from engine.forecast import bgnbd_gamma_gamma, transaction_unit  # noqa: E402
from engine.index import evaluation, signature, tuning  # noqa: E402
from engine.index.lookalike import average_precision, roc_auc  # noqa: E402
from engine.represent import tfidf_histories  # noqa: E402

FOLDS = 5

VARIANTS = {
    "default": "the default: its parts weighed by engine.index.tuning on the history's last quarter (without the vector term: this bench trains no encoder)",
    "untuned": "signature (top 3 features held by a fifth of the seeds) + 0.2 x logistic-regression rank (the default before 2026-12-03, and the tuning's fallback)",
    "previous": "the default before 2026-12-02: no support floor, regression over log counts (C=0.003)",
    "no_support": "untuned without the support floor (a feature held by any seeds may sign)",
    "log_counts": "untuned with the regression over the log counts and raw value facts (C=0.003)",
    "lr": "logistic regression alone (presence and value, C=0.006)",
    "lr_c03": "logistic regression alone, weaker penalty (C=0.06)",
    "lr_crossfit": "logistic regression cross-fitted over 5 folds of non-seeds (C=0.02)",
    "top10": "signature of the top 10 features + 0.2 x LR rank",
    "tier": "customers with a signature feature first, each tier by LR rank",
    "svd_blend": "untuned + 0.1 x rank of the TF-IDF + SVD(64) centroid cosine",
    "lowrank": "untuned + 0.2 x rank of the signature through a rank-32 SVD of the features",
    "cooccurrence": "untuned + 0.1 x rank of the items co-bought with the signature's",
    "boosting": "signature + 0.2 x rank of gradient boosting (cross-fitted; signature, value, SVD, LR inputs)",
    "activity_forecast": "untuned + 0.1 x rank of BG/NBD's expected transactions to the log's end (an activity forecast)",
    "activity_oracle": "signature + 0.2 x rank of the future purchase count (told the answer)",
    "activity_oracle_lr": "signature + 0.2 x rank of (LR rank + future purchase count rank) (told the answer)",
    "activity_oracle_half": "signature + 0.5 x rank of (LR rank + future purchase count rank) (told the answer)",
    "activity_oracle_alone": "the future purchase count alone (told the answer)",
}


def rank(x: np.ndarray) -> np.ndarray:
    return rankdata(np.asarray(x, np.float64).ravel()) / len(x)


def crossfit(fit, n: int, seeds: np.ndarray, seed: int) -> np.ndarray:
    """float64 [n]: each fold of the non-seeds scored by ``fit(negatives)`` trained without that fold, so a hidden
    buyer is never a training negative of its own score; seeds get the folds' mean."""
    rest = np.setdiff1d(np.arange(n), seeds)
    fold = np.random.default_rng(seed).integers(0, FOLDS, len(rest))
    out, seed_scores = np.zeros(n), []
    for j in range(FOLDS):
        score = fit(rest[fold != j])
        out[rest[fold == j]] = score[rest[fold == j]]
        seed_scores.append(score[seeds])
    out[seeds] = np.mean(seed_scores, axis=0)
    return out


class Scorers:
    """Every variant's scores for one task; the features and factorisations are built once per seed."""

    def __init__(self, store, future, as_of: int, seed: int):
        from sklearn.preprocessing import normalize
        from sklearn.utils.extmath import randomized_svd

        self.f = signature.SignatureFeatures.from_store(store, as_of, weights=None)
        self.tuning = tuning.tune(store, as_of, seed=seed)
        self.n, self.seed = self.f.n, seed
        tfidf = tfidf_histories(store)
        u, s, _ = randomized_svd(tfidf, min(64, min(tfidf.shape) - 1), random_state=seed)
        self.svd = normalize(u * s)
        u, s, vt = randomized_svd(self.f.matrix, min(32, min(self.f.matrix.shape) - 1), random_state=seed)
        self.low_u, self.low_vt = u * s, vt
        tokens = sum(not name.startswith("value:") for name in self.f.names)
        bought = self.f.matrix[:, :tokens].copy()
        bought.data[:] = 1.0
        self.tokens, self.bought, self.by_column = tokens, normalize(bought), normalize(bought, axis=0)
        # "recent item:X" and "item:X" mark the same buyers: a signature column stands for both
        self.base_name = np.array([name.removeprefix("recent ") for name in self.f.names[:tokens]])
        self.value = self.f.matrix[:, tokens:].toarray()
        self.future = np.bincount(future.customer_rows()[future.is_purchase()], minlength=self.n)
        horizon = (int(np.max(future.columns["ts"])) - as_of) / 86400.0
        fitted = bgnbd_gamma_gamma(store, as_of, horizon, transaction_unit(store))
        self.forecast = fitted["expected_purchases"] if fitted else np.zeros(self.n)

    def scores(self, seeds: np.ndarray) -> dict[str, np.ndarray]:
        from sklearn.ensemble import HistGradientBoostingClassifier

        f, x, inputs, n = self.f, self.f.matrix, self.f.inputs, self.n
        rest = np.setdiff1d(np.arange(n), seeds)
        sig, cols, w = signature.signature_score(f, seeds, 3)
        unsupported = signature.signature_score(f, seeds, 3, support=0.0)[0]
        lr, lr_counts = signature.regression(inputs, seeds, rest, 0.006), signature.regression(x, seeds, rest, 0.003)
        out = {"default": signature.scores(f, seeds, self.tuning.weights, seed=self.seed),
               "untuned": signature.scores(f, seeds, seed=self.seed),
               "previous": unsupported + 0.2 * rank(lr_counts), "no_support": unsupported + 0.2 * rank(lr),
               "log_counts": sig + 0.2 * rank(lr_counts),
               "lr": lr, "lr_c03": signature.regression(inputs, seeds, rest, 0.06),
               "lr_crossfit": crossfit(lambda neg: signature.regression(inputs, seeds, neg, 0.02), n, seeds, self.seed),
               "tier": (sig > 0) + 0.99 * rank(lr),
               "svd_blend": sig + 0.2 * rank(lr) + 0.1 * rank(evaluation._centroid(self.svd, seeds)),
               "lowrank": sig + 0.2 * rank(lr) + 0.2 * rank(self.low_u @ (self.low_vt[:, cols] @ w)),
               "activity_forecast": sig + 0.2 * rank(lr) + 0.1 * rank(self.forecast),
               "activity_oracle": sig + 0.2 * rank(self.future),
               "activity_oracle_lr": sig + 0.2 * rank(rank(lr) + rank(self.future)),
               "activity_oracle_half": sig + 0.5 * rank(rank(lr) + rank(self.future)),
               "activity_oracle_alone": self.future.astype(np.float64)}
        sig10, cols10, _ = signature.signature_score(f, seeds, 10)
        out["top10"] = sig10 + 0.2 * rank(lr)
        token = cols < self.tokens
        similar = np.asarray((self.by_column.T @ self.by_column[:, cols[token]]).todense())
        own = np.isin(self.base_name, self.base_name[cols[token]])
        similar[own] = 0.0  # the signature's own columns (and their recent twins) are the default's already
        out["cooccurrence"] = out["untuned"] + 0.1 * rank(self.bought @ (similar @ w[token]))
        dense = np.c_[x[:, cols10].toarray(), self.value, self.svd[:, :16], evaluation._centroid(self.svd, seeds)]

        def boosted(negatives: np.ndarray) -> np.ndarray:
            # the regression input is refitted without the fold scored, as the booster is
            features = np.c_[dense, signature.regression(inputs, seeds, negatives, 0.006)]
            rows = np.concatenate([seeds, negatives])
            y = np.r_[np.ones(len(seeds)), np.zeros(len(negatives))]
            model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_leaf_nodes=8,
                                                   min_samples_leaf=20, l2_regularization=1.0, random_state=0)
            return model.fit(features[rows], y).predict_proba(features)[:, 1]

        out["boosting"] = sig + 0.2 * rank(crossfit(boosted, n, seeds, self.seed))
        return out


def run(store, future, as_of: int, seed: int) -> dict:
    """{variant: {kind: {"roc_auc", "average_precision"}}} over the seed's tasks, TF-IDF + SVD beside."""
    scorers = Scorers(store, future, as_of, seed)
    per: dict[str, dict[str, list]] = {}
    for task in evaluation.lookalike_tasks(store, future, 25, min_buyers=10, seed=seed):  # tasks, not customers
        seeds = task["seeds"]
        candidate = np.ones(scorers.n, bool)
        candidate[seeds] = False
        positive = np.zeros(scorers.n, bool)
        positive[task["targets"]] = True
        scores = scorers.scores(seeds)
        scores["tfidf_svd"] = evaluation._centroid(scorers.svd, seeds)
        for name, score in scores.items():
            s, p = np.asarray(score, np.float64)[candidate], positive[candidate]
            per.setdefault(name, {}).setdefault(task["kind"], []).append((roc_auc(s, p), average_precision(s, p)))
    out = {name: {kind: {"roc_auc": float(np.mean([a for a, _ in v])), "average_precision": float(np.mean([b for _, b in v]))}
                  for kind, v in kinds.items()} for name, kinds in per.items()}
    return {**out, "weights": str(scorers.tuning.weights)}


def markdown(results: list[dict], seeds: list[int], seconds: float, name: str) -> str:
    names = {**VARIANTS, "tfidf_svd": evaluation.METHOD_NAMES["tfidf_svd"] + " (baseline)"}
    flag = "" if name == "completejourney" else f" --log {name}"
    lines = [f"# Lookalike scorers: {LOGS[name]['title']} (no training)", "",
             f"Written by `python bench/lookalike_scorers.py{flag} --seeds {' '.join(map(str, seeds))}`: the tasks of "
             f"bench/quality.py at cutoff {LOGS[name]['cutoff']}, task seeds {', '.join(map(str, seeds))}; mean ± standard "
             f"deviation over the seeds; {seconds:.0f} s in all. Issue 11 asks for product ROC-AUC 0.05 above the "
             "best baseline (TF-IDF + SVD).", "",
             "| scorer | category ROC-AUC | category AP | product ROC-AUC | product AP |", "| --- | --- | --- | --- | --- |"]
    for name, label in names.items():
        cells = []
        for kind in ("category", "product"):
            for metric in ("roc_auc", "average_precision"):
                v = [r[name][kind][metric] for r in results]
                cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "The default's weights, per seed (engine.index.tuning): " + "; ".join(
        f"seed {seed}: {r['weights']}" for seed, r in zip(seeds, results, strict=True)) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--log", choices=sorted(LOGS), default="completejourney")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(CJ) if args.log == "completejourney" else generated_log(Path(tmp))
        store, future, as_of = split_log(path, LOGS[args.log]["cutoff"])
    results = []
    for seed in args.seeds:
        results.append(run(store, future, as_of, seed))
        print(f"seed {seed}: weights {results[-1]['weights']}; product ROC-AUC default "
              f"{results[-1]['default']['product']['roc_auc']:.3f}, "
              f"TF-IDF + SVD {results[-1]['tfidf_svd']['product']['roc_auc']:.3f}", flush=True)
    table = markdown(results, args.seeds, time.perf_counter() - start, args.log)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "lookalike_scorers" + ("" if args.log == "completejourney" else f"_{args.log}")
    (args.out / f"{stem}.md").write_text(table)
    (args.out / f"{stem}.json").write_text(json.dumps({"seeds": args.seeds, "results": results}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
