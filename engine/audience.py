"""Audiences and lookups from a bundle, without a server: what a marketer takes to an ad platform or a CRM.

    python -m engine.audience segment 3 --bundle outputs/bundle --out segment3.csv
    python -m engine.audience node --level 4 --group 1 --fraction 0.5 --out node.parquet
    python -m engine.audience lookalike --seeds seeds.csv --count 5000 --exclude customers.csv --out lookalike.csv
    python -m engine.audience customer C000042               # segment, path and forecast, as JSON
    python -m engine.audience recommend C000042 --n 10 --new-only --out picks.csv

A segment or a hierarchy node is exported closest to its centroid first, sized by --count or --fraction (of
its members; default all of them). A lookalike audience is ranked by the service's own function
(engine.service.answers.audience: the seed signature by default), sized by --count or --fraction of the base,
seeds and --exclude never in it. Seed and exclude files: CSV or Parquet with a customer_id column, or a text
file of one id per line. Output: CSV, or Parquet for a .parquet name; columns customer_id, score (and the
segment). Erased customers are in none of them: every answer is computed from the bundle as loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def read_ids(path: str) -> list[str]:
    """Customer ids from a CSV/Parquet file (column customer_id, else its only column) or a text file."""
    file = Path(path)
    if not file.exists():
        raise SystemExit(f"{path}: no such file")
    if file.suffix in (".parquet", ".pq", ".csv"):
        table = pq.read_table(file) if file.suffix != ".csv" else pacsv.read_csv(
            file, convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                       column_types={"customer_id": pa.string()}))
        if "customer_id" in table.column_names:
            column = table["customer_id"]
        elif table.num_columns == 1:
            column = table.column(0)
        else:
            raise SystemExit(f"{path}: no customer_id column (columns: {table.column_names})")
        return [str(v) for v in column.to_pylist() if v is not None]
    return [line.strip() for line in file.read_text().splitlines() if line.strip()]


def write(table: pa.Table, out: str | None) -> None:
    """The table to ``out`` (CSV, or Parquet for .parquet), or as CSV to stdout."""
    if out is None:
        pacsv.write_csv(table, sys.stdout.buffer)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if out.endswith((".parquet", ".pq")):
        pq.write_table(table, out)
    else:
        pacsv.write_csv(table, out)
    print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)


def sized(n: int, count: int | None, fraction: float | None) -> int:
    if count is not None and fraction is not None:
        raise SystemExit("give --count or --fraction, not both")
    if count is not None:
        return max(0, min(n, count))
    if fraction is not None:
        return int(round(n * fraction))
    return n


def members(bundle, mask: np.ndarray, count: int | None, fraction: float | None) -> pa.Table:
    """The customers of ``mask``, closest to their segment's centroid first, sized."""
    c = bundle.customers
    rows = np.flatnonzero(mask)
    similarity = c.segments["similarity"].to_numpy()[rows]
    rows = rows[np.argsort(-similarity, kind="stable")][:sized(len(rows), count, fraction)]
    return pa.table({"customer_id": c.ids.take(pa.array(rows)),
                     "segment": c.segments["segment"].take(pa.array(rows)),
                     "score": pa.array(c.segments["similarity"].to_numpy()[rows], pa.float32())})


def segment_audience(bundle, segment: int, count=None, fraction=None) -> pa.Table:
    from engine.service.answers import UnknownSegment

    if not 0 <= segment < bundle.k:
        raise UnknownSegment(segment, bundle.k)
    return members(bundle, bundle.customers.segments["segment"].to_numpy() == segment, count, fraction)


def node_audience(bundle, level: int, group: int, count=None, fraction=None) -> pa.Table:
    """The members of group ``group`` at hierarchy level ``level`` (a level of hierarchy.json)."""
    c = bundle.customers
    levels = c.hierarchy.levels
    if level not in levels:
        raise ValueError(f"--level {level}: this bundle's levels are {levels}")
    if level == levels[-1]:
        return segment_audience(bundle, group, count, fraction)
    if not 0 <= group < level:
        raise ValueError(f"--group {group}: level {level} has groups 0..{level - 1}")
    parents = c.hierarchy.parents[level]
    return members(bundle, parents[c.segments["segment"].to_numpy()] == group, count, fraction)


def lookalike_audience(bundle, seeds: list[str], count=None, fraction=None, exclude=(), method="signature") -> dict:
    """The service's POST /lookalike answer, the whole audience in one page."""
    from engine.service.answers import audience
    from engine.service.schemas import LookalikeRequest

    if count is None and fraction is None:
        raise SystemExit("lookalike: give --count or --fraction")
    request = LookalikeRequest(seed_ids=seeds, size=count, fraction=fraction, exclude_ids=list(exclude),
                               method=method)
    return audience(bundle, request, 0, bundle.customers.n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.audience", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="outputs/bundle", help="the bundle directory (default outputs/bundle)")
    parser.add_argument("--ledger", help="the erasure ledger (default: erasures.jsonl beside the bundle, as train.py and serve.py)")
    sub = parser.add_subparsers(dest="command", required=True)

    def size_options(p, what: str):
        p.add_argument("--count", type=int, help=f"at most this many customers of the {what}")
        p.add_argument("--fraction", type=float, help=f"this share of the {what}")
        p.add_argument("--out", help="output file: .csv or .parquet (default: CSV to stdout)")

    p = sub.add_parser("segment", help="a segment's customers, closest to its centroid first")
    p.add_argument("segment", type=int)
    size_options(p, "segment")
    p = sub.add_parser("node", help="a hierarchy node's customers")
    p.add_argument("--level", type=int, required=True)
    p.add_argument("--group", type=int, required=True)
    size_options(p, "node")
    p = sub.add_parser("lookalike", help="the customers most like a seed list")
    p.add_argument("--seeds", required=True, help="CSV/Parquet with customer_id, or one id per line")
    p.add_argument("--exclude", help="ids never in the audience (same formats)")
    p.add_argument("--method", default="signature", choices=["signature", "nearest_seeds", "centroid", "knn_vote"])
    size_options(p, "base")
    p = sub.add_parser("customer", help="one customer's segment, hierarchy path and forecast, as JSON")
    p.add_argument("customer_id")
    p.add_argument("--horizon-days", type=float)
    p = sub.add_parser("recommend", help="one customer's recommended items")
    p.add_argument("customer_id")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--new-only", action="store_true")
    p.add_argument("--exclude-recent-days", type=float, default=0.0)
    p.add_argument("--category", action="append")
    p.add_argument("--out", help="output file: .csv or .parquet (default: CSV to stdout)")
    args = parser.parse_args(argv)

    from engine.bundle import Bundle, BundleError, UnknownCustomer
    from engine.bundle.ledger import Ledger
    from engine.service import answers
    from engine.service.answers import UnknownSegment

    try:
        bundle = Bundle.load(args.bundle, erased=Ledger.beside(args.bundle, args.ledger).read())
        if args.command == "segment":
            write(segment_audience(bundle, args.segment, args.count, args.fraction), args.out)
        elif args.command == "node":
            write(node_audience(bundle, args.level, args.group, args.count, args.fraction), args.out)
        elif args.command == "lookalike":
            answer = lookalike_audience(bundle, read_ids(args.seeds), args.count, args.fraction,
                                        read_ids(args.exclude) if args.exclude else (), args.method)
            if answer["unknown_seed_count"]:
                print(f"{answer['unknown_seed_count']} seed ids are not in the bundle (unknown or erased)",
                      file=sys.stderr)
            rows = answer["audience"]
            write(pa.table({"customer_id": pa.array([r["customer_id"] for r in rows], pa.string()),
                            "score": pa.array([r["score"] for r in rows], pa.float32())}), args.out)
        elif args.command == "customer":
            print(json.dumps(answers.customer(bundle, args.customer_id, args.horizon_days), indent=1))
        else:
            from engine.service import recommend

            f = recommend.filters(bundle, args.exclude_recent_days, args.new_only, args.category)
            items = recommend.customer_recommendations(bundle, args.customer_id, args.n, f)["items"]
            write(pa.table({"customer_id": pa.array([args.customer_id] * len(items), pa.string()),
                            **{k: pa.array([i[k] for i in items]) for k in ("item_id", "rank", "score", "category",
                                                                            "bought_before")}}), args.out)
    except (BundleError, UnknownCustomer, UnknownSegment, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
