"""Segments at k=8 from trained bundles, with the value coordinate of the hybrid vector on other scales and
weights: how much value the segments separate (eta squared after the cutoff) against how much behaviour.

    python train.py stage=evaluate 'evaluate.sections=[segments]' data.path=LOG data.cutoff=T seed=S out_dir=B-S
    python bench/segment_value.py --log LOG --cutoff T B-0 B-1 B-2

Each bundle's vector is [sqrt(a) cos t, sqrt(a) sin t, sqrt(1 - a) b] (engine.represent); b is read back from
embeddings.parquet, the value from representation.npz ("ridge", the default) or from the forecast head's
expected spend in forecast.parquet ("head"), and t and a are set anew. "behaviour" is the mean eta squared of
the share of each of the 20 most bought categories in a customer's purchases after the cutoff. Prints one
table; the baselines (engine.segment.evaluation) beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine.config  # noqa: E402,F401  registers the config schema
from engine.data.summary import purchase_counts  # noqa: E402
from engine.represent import Representation  # noqa: E402
from engine.segment import evaluation  # noqa: E402
from engine.segment.kmeans import spherical_kmeans  # noqa: E402

WEIGHTS = (0.5, 0.65, 0.8)


def load(log: str, cutoff: str):
    from hydra import compose, initialize_config_dir

    from engine.pipeline import load_data

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=[f"data.path={log}", f"data.cutoff={cutoff}"])
    data = load_data(cfg)
    return data.store, data.future, data.as_of


def scales(value: np.ndarray) -> dict[str, np.ndarray]:
    """The position on the half circle, in [0, 1], of each customer's value (predicted sqrt spend)."""
    top = max(float(np.quantile(value, 0.995)), 1e-9)
    median = max(float(np.median(value)), 1e-9)
    return {"linear": np.clip(value / top, 0, 1),
            "log": np.clip(np.log1p(value / median) / np.log1p(top / median), 0, 1),
            "quantile": (rankdata(value) - 1) / max(len(value) - 1, 1)}  # ties share their mean rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("bundles", nargs="+", type=Path, help="bundles of stage=evaluate at that cutoff, one per seed")
    args = parser.parse_args()
    store, future, as_of = load(args.log, args.cutoff)
    truth = evaluation.baselines.future_truth(future)
    counts = purchase_counts(future, "category").toarray().astype(np.float64)
    top = np.argsort(-(counts > 0).sum(0))[:20]
    bought = counts.sum(1) > 0
    share = counts[bought][:, top] / counts[bought].sum(1, keepdims=True)
    ids = store.customer_ids.to_pylist()
    rows: dict[tuple, list[dict]] = {}
    for seed, bundle in enumerate(args.bundles):
        table = pq.read_table(bundle / "embeddings.parquet")
        where = {c: i for i, c in enumerate(table.column("customer_id").to_pylist())}
        order = [where[c] for c in ids]
        vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))[order].astype(np.float32)
        rep = Representation.load(bundle / "representation.npz")
        behaviour = vectors[:, 2:] / np.sqrt(1.0 - float(rep.weights[0]))
        forecast = pq.read_table(bundle / "forecast.parquet").to_pandas().set_index("customer_id").loc[ids]
        values = {"ridge": rep.value(store, as_of), "head": np.sqrt(forecast["expected_spend"].to_numpy())}
        for source, value in values.items():
            for scale, u in scales(value).items():
                for a in WEIGHTS:
                    angle = np.pi * u
                    v = np.hstack([np.sqrt(a) * np.stack([np.cos(angle), np.sin(angle)], 1),
                                   np.sqrt(1.0 - a) * behaviour]).astype(np.float32)
                    v /= np.linalg.norm(v, axis=1, keepdims=True)
                    _, labels = spherical_kmeans(v, 8, seed=seed, niter=25, nredo=3)
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
