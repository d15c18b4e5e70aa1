"""Ingest benchmark: a generated Parquet event log -> load_store -> store.save, events/s and peak memory.

    python bench/ingest.py [--events 20000000] [--customers N] [--keep DIR] [--repeat 1] [--profile]
    python bench/ingest.py --sources 2     # the same events as two sources, the second keyed through an id map

The log is generated once with engine.data.synthetic and cached (under /tmp, or in --keep DIR). The measured
part runs in a fresh subprocess (``--measure PATH``) that only ingests, so its peak resident set counts the
ingest alone (interpreter and imports included), not the generation. Targets (issue 2): >= 5 million
events/s on a 2-core machine, and peak memory < 3x the in-memory size of the columns kept. Prints figures
and writes bench/results/ingest.json; asserts nothing. On a machine shared with other work, --repeat N
reports the fastest of N runs, and the 1-minute load average is printed beside the figures.

With --sources 2 the log is split in two halves by rows: pos.parquet keeps its customer ids, web.parquet holds
them as other keys ("k" + id) with its own event names, which data.sources maps through an id-map table of
every customer, and fills its channel. Written to bench/results/ingest_sources.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "ingest.json"
SOURCES_RESULTS = ROOT / "bench" / "results" / "ingest_sources.json"
MEAN_EVENTS = 64


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(n_events: int, n_customers: int | None, keep: str | None) -> Path:
    """The cached events.parquet for this size, generated when absent."""
    from engine.data.synthetic import SyntheticConfig, write

    n_customers = n_customers or math.ceil(n_events / MEAN_EVENTS)
    mean_events = max(2.0, n_events / n_customers)
    default = Path(tempfile.gettempdir()) / f"segment-engine-bench/ingest-{n_customers}x{mean_events:g}"
    out_dir = Path(keep) if keep else default
    path = out_dir / "events.parquet"
    if not path.exists():
        print(f"generating {n_customers} customers x {mean_events:g} events into {out_dir} ...", flush=True)
        start = time.perf_counter()
        write(SyntheticConfig(n_customers=n_customers, mean_events=mean_events, seed=0), out_dir, n_files=1)
        print(f"generated in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def split_sources(path: Path) -> Path:
    """pos.parquet, web.parquet (keys, not ids; 'purchase' named 'order') and ids.parquet beside ``path``: the
    directory of the two-source log, written once."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = path.parent / "sources"
    if (out / "ids.parquet").exists():
        return out
    out.mkdir(exist_ok=True)
    events = pq.read_table(path)
    half = events.num_rows // 2
    pq.write_table(events.slice(0, half), out / "pos.parquet", row_group_size=1 << 20)
    web = events.slice(half)
    key = pc.binary_join_element_wise(pa.scalar("k"), pc.cast(web["customer_id"], pa.string()), "")
    kind = pc.if_else(pc.equal(pc.cast(web["event_type"], pa.string()), "purchase"), "order",
                      pc.cast(web["event_type"], pa.string()))
    web = web.set_column(web.schema.get_field_index("customer_id"), "customer_id", key).set_column(web.schema.get_field_index("event_type"), "event_type", kind)
    pq.write_table(web.drop(["channel"]), out / "web.parquet", row_group_size=1 << 20)
    ids = pc.unique(events["customer_id"].cast(pa.string()))
    pq.write_table(pa.table({"source_key": pc.binary_join_element_wise(pa.scalar("k"), ids, ""), "customer_id": ids}),
                   out / "ids.parquet")
    return out


def spec_of(path: str, sources: int):
    """The EventLogSpec the run reads: the one file, or its two sources (split_sources)."""
    from engine.data import EventLogSpec
    from engine.data.events import Source
    from engine.data.sources import IdMap

    if sources == 1:
        return EventLogSpec(path=path)
    out = Path(path)
    return EventLogSpec(None, sources=[Source(str(out / "pos.parquet"), "pos"),
                                       Source(str(out / "web.parquet"), "web", event_types={"order": "purchase"},
                                              channel="web", map_ids=True)],
                        id_map=IdMap(str(out / "ids.parquet")))


def measure(path: str, profile: bool, sources: int = 1) -> dict:
    """Ingest ``path`` (a log, or with ``sources`` 2 the directory of split_sources) into a store saved to a
    temporary directory; the figures as a dict."""
    import pyarrow as pa

    from engine.data import load_store

    pa.array([0])  # pyarrow imports pandas on its first conversion: an import, not ingest work
    import engine.data.store  # noqa: F401  imported by load_store on first use (with torch): not ingest work
    rss_imports = peak_rss_mb()
    profiler = cProfile.Profile() if profile else None
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        cpu, start = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        store, report = load_store(spec_of(path, sources))
        loaded = time.perf_counter()
        store.save(Path(tmp) / "store")
        if profiler:
            profiler.disable()
        end, cpu = time.perf_counter(), time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    kept_mb = (sum(v.nbytes for v in store.columns.values()) + store.offsets.nbytes) / 2**20
    return {
        "path": path, "sources": sources, "rows_read": report.rows_read, "events": store.n_events, "customers": store.n_customers,
        "seconds": round(end - start, 3), "load_seconds": round(loaded - start, 3),
        "save_seconds": round(end - loaded, 3), "cpu_seconds": round(cpu, 3),
        "events_per_s": round(report.rows_read / (end - start)), "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(rss_imports, 1), "kept_mb": round(kept_mb, 1),
        "peak_over_kept": round(peak_rss_mb() / kept_mb, 2), "cpus": os.cpu_count(), "load_average": round(load, 2),
    }


def _run(command: list[str]) -> str:
    """The last line a subprocess printed; its other output passes through."""
    lines = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
    print("\n".join(lines[:-1]), end="\n" if len(lines) > 1 else "", flush=True)
    return lines[-1]


def table(result: dict) -> str:
    rows = [
        ("events", f"{result['rows_read']:,}"),
        ("customers", f"{result['customers']:,}"),
        ("seconds (load + save)", f"{result['seconds']:.2f} ({result['load_seconds']:.2f} + "
                                  f"{result['save_seconds']:.2f})"),
        ("events/s", f"{result['events_per_s'] / 1e6:.2f} M  (target >= 5 M)"),
        ("cpu seconds (all threads)", f"{result['cpu_seconds']:.2f}  (on {result['cpus']} cores, "
                                      f"load average {result['load_average']:.1f})"),
        ("peak RSS MB", f"{result['peak_rss_mb']:.0f}  (after imports {result['rss_after_imports_mb']:.0f})"),
        ("kept columns MB", f"{result['kept_mb']:.0f}"),
        ("peak / kept", f"{result['peak_over_kept']:.2f}  (target < 3; above imports / kept: "
                        f"{(result['peak_rss_mb'] - result['rss_after_imports_mb']) / result['kept_mb']:.2f})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000, help="at least this many events (default 20M)")
    parser.add_argument("--customers", type=int, default=None, help=f"default: events / {MEAN_EVENTS}")
    parser.add_argument("--keep", default=None, help="directory for the generated log (default: under /tmp)")
    parser.add_argument("--repeat", type=int, default=1, help="measure N times; report the fastest run "
                        "(and the largest peak RSS)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured run to stderr")
    parser.add_argument("--sources", type=int, default=1, choices=[1, 2], help="2: the log as two sources, one "
                        "keyed through an id map (bench/results/ingest_sources.json)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the subprocesses' entry points
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.profile, args.sources)))
        return
    if args.generate:
        path = generate(args.events, args.customers, args.keep)
        print(split_sources(path) if args.sources > 1 else path)
        return

    # Linux keeps a process's peak RSS across fork and exec, so this process stays small: generation and
    # measurement each run in a subprocess of their own.
    forward = ["--events", str(args.events)] + (["--customers", str(args.customers)] if args.customers else [])
    path = _run([sys.executable, __file__, "--generate", *forward, "--sources", str(args.sources),
                 *(["--keep", args.keep] if args.keep else [])])
    command = ([sys.executable, __file__, "--measure", path, "--sources", str(args.sources)]
               + (["--profile"] if args.profile else []))
    runs = [json.loads(_run(command)) for _ in range(max(1, args.repeat))]
    result = min(runs, key=lambda run: run["seconds"])
    result["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    result["peak_over_kept"] = round(result["peak_rss_mb"] / result["kept_mb"], 2)
    result["all_seconds"] = [run["seconds"] for run in runs]
    print(table(result))
    results = RESULTS if args.sources == 1 else SOURCES_RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {results.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
