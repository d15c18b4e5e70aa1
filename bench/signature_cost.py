"""What the tuned signature lookalike costs: tuning (training time), building the features (the service's first
lookalike query after a load or an erasure) and one query, with the tuned weights beside the untuned ones, on
the real log and on generated bases of growing size.

    python bench/signature_cost.py                     # Complete Journey, generated 20,000 and 100,000 customers
    python bench/signature_cost.py --customers 20000   # generated bases of these sizes only

Each query is 1% of the base as seeds, drawn at random (the service bench's query); times are medians over
--queries queries, in one process on this machine. Writes bench/results/signature_cost.md and .json.
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

from quality import CJ, split_log  # noqa: E402

from engine.index import signature, tuning  # noqa: E402

GENERATED_SIZES = (20_000, 100_000)


def seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(name: str, store, as_of: int, queries: int) -> dict:
    print(f"[{name}] {store.n_customers:,} customers, {store.n_events:,} events: tuning ...", flush=True)
    tune_s, tuned = seconds(lambda: tuning.tune(store, as_of))
    row = {"log": name, "customers": store.n_customers, "events": store.n_events, "tune_s": tune_s,
           "weights": str(tuned.weights), "reason": tuned.reason}
    rng = np.random.default_rng(0)
    draws = [rng.choice(store.n_customers, max(store.n_customers // 100, 2), replace=False) for _ in range(queries)]
    weightings = {"untuned": signature.UNTUNED, "tuned": tuned.weights}
    built = {label: seconds(lambda w=w: signature.SignatureFeatures.from_store(store, as_of, weights=w))
             for label, w in weightings.items()}
    times = {label: [] for label in weightings}
    for s in draws:  # the two weightings alternate, so both see the machine alike
        for label, w in weightings.items():
            times[label].append(seconds(lambda s=s, w=w, f=built[label][1]: signature.scores(f, s, w))[0])
    for label in weightings:
        row[label] = {"features_s": built[label][0], "query_p50_ms": 1000 * float(np.median(times[label])),
                      "query_max_ms": 1000 * float(np.max(times[label]))}
        print(f"[{name}] {label}: features {row[label]['features_s']:.1f} s, query p50 "
              f"{row[label]['query_p50_ms']:.0f} ms", flush=True)
    return row


def markdown(rows: list[dict], queries: int) -> str:
    lines = ["# What the tuned signature lookalike costs", "",
             f"Written by `python bench/signature_cost.py`: one process on this machine; a query is 1% of the base as "
             f"seeds, median (and max) over {queries} random seed lists. Tuning runs once per training run; the "
             "features are built on the service's first lookalike query after a load or an erasure.", "",
             "| log | customers | events | tuning s | weights chosen | features s (untuned / tuned) | "
             "query p50 ms (untuned / tuned) | query max ms (untuned / tuned) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        u, t = r["untuned"], r["tuned"]
        lines.append(f"| {r['log']} | {r['customers']:,} | {r['events']:,} | {r['tune_s']:.1f} | {r['weights']} | "
                     f"{u['features_s']:.1f} / {t['features_s']:.1f} | {u['query_p50_ms']:.0f} / {t['query_p50_ms']:.0f} | "
                     f"{u['query_max_ms']:.0f} / {t['query_max_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, nargs="*", default=list(GENERATED_SIZES))
    parser.add_argument("--no-real", action="store_true", help="skip Complete Journey")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    from engine.data.synthetic import SyntheticConfig, write

    rows = []
    if not args.no_real and CJ.exists():
        store, _, as_of = split_log(str(CJ), "2017-07-03")
        rows.append(measure("Complete Journey (to 2017-07-03)", store, as_of, args.queries))
    for n in args.customers:
        with tempfile.TemporaryDirectory() as tmp:
            write(SyntheticConfig(n_customers=n, seed=3), Path(tmp))
            store, _, as_of = split_log(str(Path(tmp) / "events.parquet"), "2024-11-01")
        rows.append(measure(f"generated, {n:,} customers", store, as_of, args.queries))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "signature_cost.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows, args.queries)
    (args.out / "signature_cost.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
