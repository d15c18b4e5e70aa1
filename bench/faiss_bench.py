"""Segments and lookalikes at scale: our FAISS wrappers against FAISS called directly, on the same vectors.

    python bench/faiss_bench.py [--n 1000000] [--quick] [--queries 20] [--repeat 3] [--threads N]

Vectors: ``--n`` float32 64-d rows, L2-normalised, drawn around 256 planted centres (so k-means and
lookalike seeds have structure to find). Figures:

- k-means: seconds of ``engine.segment.kmeans.spherical_kmeans`` into 256 segments (train, assign, order by
  size) against ``faiss.Kmeans`` with the same settings (spherical, niter, nredo, seed) trained and then
  assigning every row; the fastest of ``--repeat`` interleaved runs of each.
- lookalike: flat (exact) and IVF indexes from ``engine.index.index.build_index`` (IVF nprobe from
  conf/index/ivf.yaml); per query, 100 seed customers of one planted group and an audience of 1% of the base.
  Latency p50/p99 of ``engine.index.lookalike.lookalike`` against ``index.search`` called directly with the
  normalised seed mean and the same k on the same index, and recall of the IVF audience against the exact one.

Prints figures and writes bench/results/faiss.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.index.index import build_index  # noqa: E402
from engine.index.lookalike import lookalike  # noqa: E402
from engine.segment.kmeans import spherical_kmeans  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "faiss.json"
DIM, GROUPS, SEGMENTS, SEEDS, AUDIENCE = 64, 256, 256, 100, 0.01


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 [n, 64] L2-normalised, planted group int64 [n]) around 256 random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((GROUPS, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    group = rng.integers(0, GROUPS, n)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x *= 0.6 / np.sqrt(DIM)
    x += centres[group]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, group


def time_kmeans(x: np.ndarray, niter: int, nredo: int, repeat: int) -> dict:
    """Fastest of ``repeat`` interleaved runs of spherical_kmeans and of faiss.Kmeans + assignment."""

    def direct() -> None:
        km = faiss.Kmeans(DIM, SEGMENTS, spherical=True, seed=0, niter=niter, nredo=nredo)
        km.train(x)
        km.index.search(x, 1)

    def ours() -> None:
        spherical_kmeans(x, SEGMENTS, seed=0, niter=niter, nredo=nredo)

    times = {"ours": [], "faiss": []}
    for _ in range(repeat):
        for name, fn in (("faiss", direct), ("ours", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {name: min(t) for name, t in times.items()}
    return {
        "kmeans_s": round(best["ours"], 3),
        "kmeans_faiss_s": round(best["faiss"], 3),
        "kmeans_ratio": round(best["faiss"] / best["ours"], 3),
        "kmeans_all_s": times,
        "kmeans_niter": niter,
        "kmeans_nredo": nredo,
    }


def seed_sets(group: np.ndarray, queries: int, seed: int = 1) -> list[np.ndarray]:
    """``queries`` seed lists of 100 rows, each drawn from one planted group."""
    rng = np.random.default_rng(seed)
    sets = []
    for g in rng.choice(GROUPS, queries, replace=False):
        members = np.flatnonzero(group == g)
        sets.append(np.sort(rng.choice(members, min(SEEDS, len(members)), replace=False)))
    return sets


def time_lookalike(index, x: np.ndarray, seeds: list[np.ndarray], size: int) -> tuple[dict, list[np.ndarray]]:
    """Per-query seconds of lookalike() and of index.search with the same query and k; the audiences."""
    ours, direct, audiences, returned = [], [], [], []
    lookalike(index, x, seeds[0], size)  # warm-up
    for rows in seeds:
        t0 = time.perf_counter()
        audience, _ = lookalike(index, x, rows, size)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        query = x[rows].mean(axis=0, keepdims=True)
        query /= np.linalg.norm(query)
        index.search(query, min(size + len(rows), index.ntotal))
        direct.append(time.perf_counter() - t0)
        audiences.append(audience)
        returned.append(len(audience))
    ms = lambda t, q: round(1e3 * float(np.percentile(t, q)), 3)  # noqa: E731
    return {
        "p50_ms": ms(ours, 50),
        "p99_ms": ms(ours, 99),
        "faiss_p50_ms": ms(direct, 50),
        "faiss_p99_ms": ms(direct, 99),
        "ratio_p50": round(float(np.median(direct) / np.median(ours)), 3),
        "min_returned": int(min(returned)),
    }, audiences


def bench_lookalike(x: np.ndarray, group: np.ndarray, queries: int) -> dict:
    from omegaconf import OmegaConf

    ivf_conf = OmegaConf.load(ROOT / "conf" / "index" / "ivf.yaml")
    n = len(x)
    size = max(1, round(AUDIENCE * n))
    seeds = seed_sets(group, queries)
    ids = np.arange(n, dtype=np.int64)
    result = {"lookalike_queries": queries, "lookalike_seeds": SEEDS, "audience": size}
    audiences = {}
    for kind, options in (("flat", {}), ("ivf", {"nprobe": ivf_conf.nprobe, "nlist": ivf_conf.nlist})):
        t0 = time.perf_counter()
        index = build_index(x, ids, kind=kind, **options)
        result[f"{kind}_build_s"] = round(time.perf_counter() - t0, 3)
        if kind == "ivf":
            inner = faiss.extract_index_ivf(index)
            result.update(ivf_nlist=int(inner.nlist), ivf_nprobe=int(inner.nprobe))
        figures, audiences[kind] = time_lookalike(index, x, seeds, size)
        result.update({f"{kind}_{k}": v for k, v in figures.items()})
        del index
    recall = [
        len(np.intersect1d(a, b)) / size for a, b in zip(audiences["ivf"], audiences["flat"], strict=True)
    ]
    result["ivf_recall"] = round(float(np.mean(recall)), 4)
    result["ivf_recall_min"] = round(float(np.min(recall)), 4)
    return result


def table(r: dict) -> str:
    rows = [
        ("vectors", f"{r['n']:,} x {DIM} (256 planted groups); {r['threads']} threads"),
        (
            "k-means into 256 s",
            f"{r['kmeans_s']:.2f} ours vs {r['kmeans_faiss_s']:.2f} faiss.Kmeans = {r['kmeans_ratio']:.2f}",
        ),
        (
            "lookalike audience",
            f"{r['audience']:,} customers from {SEEDS} seeds, {r['lookalike_queries']} queries",
        ),
    ]
    for kind in ("flat", "ivf"):
        rows.append(
            (
                f"  {kind} p50 / p99 ms",
                f"{r[f'{kind}_p50_ms']:.2f} / {r[f'{kind}_p99_ms']:.2f} ours vs "
                f"{r[f'{kind}_faiss_p50_ms']:.2f} / {r[f'{kind}_faiss_p99_ms']:.2f} search "
                f"= {r[f'{kind}_ratio_p50']:.2f}; build {r[f'{kind}_build_s']:.1f} s",
            )
        )
    rows.append(
        (
            "  ivf recall vs exact",
            f"{r['ivf_recall']:.3f} (min {r['ivf_recall_min']:.3f}); nlist "
            f"{r['ivf_nlist']}, nprobe {r['ivf_nprobe']}; fewest returned {r['ivf_min_returned']:,}",
        )
    )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="vectors (default 1M; --quick 100k)")
    parser.add_argument("--quick", action="store_true", help="100k vectors, one k-means run")
    parser.add_argument("--queries", type=int, default=20, help="lookalike queries per index")
    parser.add_argument(
        "--repeat", type=int, default=None, help="k-means runs of each (default 3; --quick 1)"
    )
    parser.add_argument("--niter", type=int, default=25, help="k-means iterations (conf/segment default 25)")
    parser.add_argument("--nredo", type=int, default=1, help="k-means restarts")
    parser.add_argument(
        "--threads", type=int, default=None, help="faiss.omp_set_num_threads (default: all cores)"
    )
    parser.add_argument("--out", default=str(RESULTS), help="where to write the JSON figures")
    args = parser.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    x, group = clustered(n)
    result = {
        "n": n,
        "dim": DIM,
        "segments": SEGMENTS,
        "threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
    }
    result.update(time_kmeans(x, args.niter, args.nredo, repeat))
    result.update(bench_lookalike(x, group, args.queries))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
