"""The tuned lookalike against the untuned one at cutoffs other than bench/quality.py's, without training: does
the tuning (engine/index/tuning.py) help wherever the log is cut, or only at the cutoff it was studied at?

    python bench/lookalike_cutoffs.py     # Complete Journey at 2017-06-05, 2017-07-03, 2017-08-07;
                                          # the generated log at 2024-10-01, 2024-11-01, 2024-12-01

For each cutoff and seed: the weights are tuned on the history before the cutoff, and the tasks of
bench/quality.py after it are scored with the tuned and the untuned weights (no vector term: no encoder is
trained), beside the TF-IDF + SVD(64) centroid. Mean ± standard deviation over seeds 0-2. Writes
bench/results/lookalike_cutoffs.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality import CJ, LOGS, generated_log, split_log  # noqa: E402

from engine.index import evaluation, signature, tuning  # noqa: E402

CUTOFFS = {"completejourney": ("2017-06-05", "2017-07-03", "2017-08-07"),
           "generated": ("2024-10-01", "2024-11-01", "2024-12-01")}
FIGURES = (("category", "roc_auc"), ("product", "roc_auc"), ("category", "average_precision"),
           ("product", "average_precision"))


def run(path: str, cutoff: str, seeds: list[int]) -> dict:
    store, future, as_of = split_log(path, cutoff)
    none = np.zeros((store.n_customers, 2), np.float32)  # the engine's vectors: unused by the signature scorer
    out = {"tuned": [], "untuned": [], "tfidf_svd": [], "weights": []}
    for seed in seeds:
        chosen = tuning.tune(store, as_of, seed=seed).weights
        out["weights"].append(str(chosen))
        for label, weights in (("tuned", chosen), ("untuned", signature.UNTUNED)):
            methods = evaluation.evaluate(store, future, none, as_of, None, 25, 10, seed, weights=weights)["methods"]
            out[label].append([methods["engine"][kind][metric] for kind, metric in FIGURES])
            if label == "untuned":
                out["tfidf_svd"].append([methods["tfidf_svd"][kind][metric] for kind, metric in FIGURES])
    return out


def markdown(results: dict, seeds: list[int], seconds: float) -> str:
    lines = ["# The tuned lookalike at other cutoffs (no training)", "",
             f"Written by `python bench/lookalike_cutoffs.py`: seeds {', '.join(map(str, seeds))}, mean ± standard "
             f"deviation; {seconds:.0f} s in all. The weights are tuned on the history before each cutoff; no vector "
             "term (no encoder is trained here, so the figures sit a little under bench/quality.py's).", "",
             "| log | cutoff | scorer | category ROC-AUC | product ROC-AUC | category AP | product AP |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (name, cutoff), r in results.items():
        for label, title in (("tuned", "tuned (the default)"), ("untuned", "untuned"),
                             ("tfidf_svd", "TF-IDF + SVD(64) centroid")):
            v = np.array(r[label])
            cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(v.mean(0), v.std(0, ddof=1), strict=True)]
            lines.append(f"| {LOGS[name]['title']} | {cutoff} | {title} | " + " | ".join(cells) + " |")
    lines += ["", "Weights chosen:"]
    lines += [f"- {LOGS[name]['title']}, {cutoff}: " + "; ".join(r["weights"]) for (name, cutoff), r in results.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cutoffs in CUTOFFS.items():
            path = str(CJ) if name == "completejourney" else generated_log(Path(tmp))
            for cutoff in cutoffs:
                print(f"[{name} {cutoff}] ...", flush=True)
                results[(name, cutoff)] = run(path, cutoff, args.seeds)
    table = markdown(results, args.seeds, time.perf_counter() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lookalike_cutoffs.md").write_text(table)
    (args.out / "lookalike_cutoffs.json").write_text(json.dumps({f"{n} {c}": r for (n, c), r in results.items()}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
