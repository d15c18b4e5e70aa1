"""Segments at k=8 from trained bundles, with the value coordinate of the hybrid vector on other scales and
weights: how much value the segments separate (eta squared after the cutoff) against how much behaviour.

    python train.py stage=evaluate 'evaluate.sections=[segments]' data.path=LOG data.cutoff=T seed=S out_dir=B-S
    python bench/segment_value.py --log LOG --cutoff T B-0 B-1 B-2

Each bundle's vector is [sqrt(a) cos t, sqrt(a) sin t, sqrt(1 - a) b] (engine.represent); b is read back from
embeddings.parquet, the value from representation.npz's ridge ("ridge"), from the forecast head's expected
spend in forecast.parquet ("head") or the mean of their square roots ("ridge+head", the default's), and t and
a are set anew: on the scales of ``scales`` and, for ridge+head, the default's "linear+expected log" (half
value / q99.5, half the expected log spend of a second ridge and of the head; engine.represent, refitted on
the bundle's history). "behaviour" is the mean eta squared of the share of each of the 20 most bought
categories in a customer's purchases after the cutoff. Prints one
table; the baselines (engine.segment.evaluation) beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality import split_log  # noqa: E402

from engine.data.summary import purchase_counts  # noqa: E402
from engine.forecast.process import COLUMNS, Process  # noqa: E402
from engine.represent import Representation, place  # noqa: E402
from engine.segment import evaluation  # noqa: E402
from engine.segment.kmeans import spherical_kmeans  # noqa: E402

WEIGHTS = (0.5, 0.65, 0.8)


def scales(value: np.ndarray) -> dict[str, np.ndarray]:
    """The position on the half circle, in [0, 1], of each customer's value (predicted sqrt spend)."""
    top = max(float(np.quantile(value, 0.995)), 1e-9)
    median = max(float(np.median(value)), 1e-9)
    return {"linear": np.clip(value / top, 0, 1),
            "log": np.clip(np.log1p(value / median) / np.log1p(top / median), 0, 1),
            "quantile": (rankdata(value) - 1) / max(len(value) - 1, 1),  # ties share their mean rank
            "linear+log": 0.5 * (np.clip(value / top, 0, 1)
                                 + np.clip(np.log1p(value / median) / np.log1p(top / median), 0, 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("bundles", nargs="+", type=Path, help="bundles of stage=evaluate at that cutoff, one per seed")
    args = parser.parse_args()
    store, future, as_of = split_log(args.log, args.cutoff)
    truth = evaluation.baselines.future_truth(future)
    counts = purchase_counts(future, "category").toarray().astype(np.float64)
    top = np.argsort(-(counts > 0).sum(0))[:20]
    bought = counts.sum(1) > 0
    share = counts[bought][:, top] / counts[bought].sum(1, keepdims=True)
    rows: dict[tuple, list[dict]] = {}
    for seed, bundle in enumerate(args.bundles):
        embeddings, forecast = (pq.read_table(bundle / name) for name in ("embeddings.parquet", "forecast.parquet"))
        order = pc.index_in(store.customer_ids, value_set=embeddings["customer_id"]).to_numpy()
        vectors = np.stack(embeddings["embedding"].to_numpy(zero_copy_only=False))[order].astype(np.float32)
        rep = Representation.load(bundle / "representation.npz")
        behaviour = vectors[:, 2:] / np.sqrt(1.0 - float(rep.weights[0]))
        # the head's expected spend over the value model's horizon, as engine.pipeline.representation_spend
        meta = json.loads((bundle / "manifest.json").read_text())["forecast"]
        order = pc.index_in(store.customer_ids, value_set=forecast["customer_id"]).to_numpy()
        answer = Process.from_columns({c: forecast[c].to_numpy()[order] for c in COLUMNS}, meta["decay_per_day"],
                                      meta["span_days"]).answer(float(rep.horizon_days[0]))
        spend = answer["expected_spend"]
        ridge = dataclasses.replace(rep, value_blend=np.zeros(1)).value(store, as_of)  # the ridge alone
        values = {"ridge": ridge, "head": np.sqrt(spend), "ridge+head": 0.5 * (ridge + np.sqrt(spend))}
        # the default's position (engine.represent): linear half by value, log half by expected log spend
        fitted = Representation.fit(store, as_of, float(rep.horizon_days[0]), rep.components.shape[1],
                                    forecast=answer, seed=seed)
        default = {"linear+expected log": fitted.position(store, as_of, values["ridge+head"], answer)}
        for source, value in values.items():
            for scale, u in (scales(value) | (default if source == "ridge+head" else {})).items():
                for a in WEIGHTS:
                    _, labels = spherical_kmeans(place(u, behaviour, a), 8, seed=seed, niter=25, nredo=3)
                    rows.setdefault((source, scale, a), []).append({
                        "spend": evaluation.eta_squared(labels, truth["spend"]),
                        "log_spend": evaluation.eta_squared(labels, np.log1p(truth["spend"])),
                        "purchases": evaluation.eta_squared(labels, truth["purchases"]),
                        "behaviour": float(np.nanmean([evaluation.eta_squared(labels[bought], share[:, j])
                                                    for j in range(share.shape[1])]))})
    metrics = ("spend", "log_spend", "purchases", "behaviour")
    print("| value | scale | weight | " + " | ".join(metrics) + " |\n| --- | --- | --- | " + ("--- | " * len(metrics)).rstrip())
    for (source, scale, a), results in rows.items():
        cells = [f"{np.mean([r[m] for r in results]):.3f} ± {np.std([r[m] for r in results], ddof=1):.3f}"
                 if len(results) > 1 else f"{results[0][m]:.3f}" for m in metrics]
        print(f"| {source} | {scale} | {a} | " + " | ".join(cells) + " |")
    for name, r in evaluation.evaluate(store, future, as_of, {}, 0).items():
        print(f"| {evaluation.NAMES.get(name, name)} | | | {r['spend']:.3f} | {r['log_spend']:.3f} | {r['purchases']:.3f} | |")


if __name__ == "__main__":
    main()
