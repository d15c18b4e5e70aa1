"""Every benchmark, each in its own subprocess, and one table of figures beside their references.

    python bench/run.py [--quick] [--peer] [--threads N] [--only NAME ...]   # --only: the others' rows carried over

Runs bench/ingest.py, bench/throughput.py, bench/faiss_bench.py, bench/service.py and, when its virtual
environment exists (``--peer`` makes it), bench/lifestream_peer.py on the same generated log as throughput.py.
Each writes its own JSON under bench/results/; this script gathers them into bench/results/results.md and
results.json and prints the table. A benchmark that is missing or fails is reported as such; nothing here
asserts. ``--quick`` uses small sizes (the whole suite in a few minutes).

Every figure stands beside a reference measured in the same run, and ``ratio`` says how ours compares:
above 1 is better for us (throughput: ours / reference; seconds and megabytes: reference / ours).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PEER_VENV = Path("/tmp/ptls-venv")
PEER_PACKAGES = ["pytorch-lifestream==0.6.0", "distributed"]


def run(name: str, command: list[str], log: list[str], timeout: float) -> bool:
    """Run one benchmark, its output passing through; False (and a note) when it is missing or fails."""
    script = Path(command[1])
    if not script.exists():
        log.append(f"{name}: {script.relative_to(ROOT)} is missing; not run")
        print(f"\n== {name}: missing ({script.relative_to(ROOT)}) ==", flush=True)
        return False
    print(f"\n== {name}: {' '.join(str(c) for c in command)} ==", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        log.append(f"{name}: did not finish in {timeout:.0f} s; stopped")
        return False
    if done.returncode != 0:
        log.append(f"{name}: exited with status {done.returncode} after {time.perf_counter() - start:.0f} s")
        return False
    return True


def capture(name: str, command: list[str], log: list[str], timeout: float) -> dict | None:
    """Run a command that prints one JSON line last; that object, or None (and a note)."""
    print(f"\n== {name}: {' '.join(str(c) for c in command)} ==", flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=timeout, stdout=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        log.append(f"{name}: did not finish in {timeout:.0f} s; stopped")
        return None
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    if done.returncode != 0 or not lines:
        log.append(f"{name}: exited with status {done.returncode}")
        return None
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        log.append(f"{name}: last line is not JSON: {lines[-1][:200]}")
        return None


def fresh_json(path: Path, since: float, name: str, log: list[str]) -> dict | None:
    """The JSON a benchmark wrote after ``since`` (an older file is someone else's run)."""
    if not path.exists():
        log.append(f"{name}: wrote no {path.relative_to(ROOT)}")
        return None
    if path.stat().st_mtime < since:
        log.append(f"{name}: {path.relative_to(ROOT)} is older than this run; not used")
        return None
    return json.loads(path.read_text())


def carry_over(results: dict, only: set[str], log: list[str]) -> None:
    """With --only, the benchmarks not run keep their rows from the JSON an earlier run left, each named in a
    note (results.md stays whole instead of shrinking to the rows just run). The JSONs carry no date, and a
    checkout resets file times: the commit that wrote the file dates it."""
    for name in ("ingest", "throughput", "peer", "faiss", "service"):
        path = RESULTS / f"{name}.json"
        if name in only or name in results or not path.exists():
            continue
        results[name] = json.loads(path.read_text())
        log.append(f"{name}: not run now; its rows are an earlier run's, from {path.relative_to(ROOT)}")


def install_peer(log: list[str]) -> bool:
    """Make PEER_VENV with exactly our torch build, then ptls 0.6.0; abort if pip would replace torch."""
    import torch

    pip = [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    torch_pin = f"torch=={torch.__version__}"  # our build (e.g. 2.13.0+cpu): never a CUDA wheel by accident
    constraints = PEER_VENV / "torch-constraint.txt"
    steps = [
        ["python3", "-m", "venv", str(PEER_VENV)],
        pip + [torch_pin],
        pip + ["-c", str(constraints)] + PEER_PACKAGES,
    ]
    for i, step in enumerate(steps):
        if i == 2:
            constraints.write_text(torch_pin + "\n")
        print(f"\n== peer install: {' '.join(step)} ==", flush=True)
        if subprocess.run(step).returncode != 0:
            log.append(
                f"peer: install step failed: {' '.join(step)}"
                + (" (pip could not keep our torch build)" if i == 2 else "")
            )
            return False
    return True


def ratio(ours: float | None, reference: float | None, higher_is_better: bool = True) -> float | None:
    if not ours or not reference:
        return None
    return ours / reference if higher_is_better else reference / ours


def figures(r: dict) -> list[dict]:
    """Table rows from the benchmarks' JSON: figure, ours, reference name and value, ratio, target."""
    rows = []

    def add(figure, ours, reference, ref_value, target, higher=True, fmt="{:,.0f}"):
        rows.append(
            {
                "figure": figure,
                "ours": ours,
                "reference": reference,
                "reference_value": ref_value,
                "ratio": ratio(ours, ref_value, higher),
                "target": target,
                "format": fmt,
            }
        )

    ingest, speed, memory = (
        r.get("ingest"),
        (r.get("throughput") or {}).get("speed"),
        (r.get("throughput") or {}).get("memory"),
    )
    peer, faiss, service = r.get("peer"), r.get("faiss"), r.get("service")
    if ingest:
        add(
            f"ingest events/s ({ingest['rows_read']:,} events)",
            ingest["events_per_s"],
            "peer PandasDataPreprocessor",
            peer and peer.get("preprocess_events_per_s"),
            ">= 5,000,000 events/s",
        )
    if speed:
        add(
            "training events/s (CoLES views)",
            speed["train_events_per_s"],
            "bare loop, same batches",
            speed["train_bare_events_per_s"],
            "ratio >= 0.8",
        )
        head = " (ours + forecast head)" if speed.get("forecast_weight") else ""
        add(
            f"training customers/s{head}",
            speed["train_customers_per_s"],
            "peer ptls CoLES",
            peer and peer.get("train_customers_per_s"),
            "ratio >= 4 (peer ~370 on the issue author's machine)",
        )
        add(
            f"training events/s vs peer{head}",
            speed["train_events_per_s"],
            "peer ptls CoLES",
            peer and peer.get("train_events_per_s"),
            "",
        )
        if "coles_only_train_customers_per_s" in speed:
            add(
                "training customers/s, CoLES objective only (as the peer)",
                speed["coles_only_train_customers_per_s"],
                "peer ptls CoLES",
                peer and peer.get("train_customers_per_s"),
                "ratio >= 4",
            )
        add(
            f"batch embedding customers/s ({speed['customers']:,})",
            speed["embed_customers_per_s"],
            "bare forward, same batches",
            speed["embed_bare_customers_per_s"],
            "ratio >= 0.8",
        )
        add(
            "batch embedding customers/s vs peer",
            speed["embed_customers_per_s"],
            "peer ptls inference",
            peer and peer.get("embed_customers_per_s"),
            "ratio >= 5 (peer ~2,000 on the issue author's machine)",
        )
    if memory:
        add(
            f"peak RSS MB, load + train + embed ({memory['customers']:,} customers)",
            memory["peak_rss_mb"],
            "peer, same log",
            peer and peer.get("peak_rss_mb"),
            "< 1,000 MB at 100k (peer 2,600)",
            higher=False,
        )
    if faiss:
        add(
            f"k-means s, {faiss['n']:,} x {faiss['dim']} into {faiss['segments']}",
            faiss["kmeans_s"],
            "faiss.Kmeans + assign",
            faiss["kmeans_faiss_s"],
            "ratio ~1",
            higher=False,
            fmt="{:.2f}",
        )
        for kind, name in (("flat", "exact"), ("ivf", "IVF")):
            for q in ("p50", "p99"):
                add(
                    f"lookalike {name} {q} ms ({faiss['audience']:,} of {faiss['n']:,})",
                    faiss[f"{kind}_{q}_ms"],
                    "faiss index.search",
                    faiss[f"{kind}_faiss_{q}_ms"],
                    "",
                    higher=False,
                    fmt="{:.2f}",
                )
        add(
            "lookalike IVF recall of the exact audience",
            faiss["ivf_recall"],
            "exact (flat)",
            1.0,
            "",
            fmt="{:.3f}",
        )
    if service:
        endpoints = service.get("endpoints", {})
        floor = next((v for k, v in endpoints.items() if k.startswith("GET")), None)
        for name, e in endpoints.items():
            for q in ("p50", "p99"):
                is_floor = floor is e
                add(
                    f"service {name} {q} ms",
                    e[f"{q}_ms"],
                    "" if is_floor else "GET (HTTP floor)",
                    None if is_floor else floor and floor[f"{q}_ms"],
                    "p99 < 20 ms" if "score" in name and q == "p99" else "",
                    higher=False,
                    fmt="{:.2f}",
                )
    return rows


def markdown(rows: list[dict], notes: list[str], header: str) -> str:
    def show(value, fmt):
        return "—" if value is None else fmt.format(value)

    lines = [
        header,
        "",
        "| figure | ours | reference | reference value | ratio | target |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['figure']} | {show(row['ours'], row['format'])} | {row['reference'] or '—'} | "
            f"{show(row['reference_value'], row['format'])} | {show(row['ratio'], '{:.2f}')} | "
            f"{row['target']} |"
        )
    lines += [
        "",
        "ratio > 1 is better for us (throughput: ours / reference; seconds and MB: reference / ours).",
    ]
    if notes:
        lines += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole suite in a few minutes")
    parser.add_argument(
        "--peer", action="store_true", help=f"install the ptls peer into {PEER_VENV} if absent"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch / faiss threads for throughput, faiss and the peer (default: their own)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=["ingest", "throughput", "peer", "faiss", "service"],
        help="run only these",
    )
    args = parser.parse_args()
    only = set(args.only or ["ingest", "throughput", "peer", "faiss", "service"])
    py, quick = sys.executable, ["--quick"] if args.quick else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    notes: list[str] = []
    results: dict = {}
    started = time.time()
    timeout = 1800 if args.quick else 7200

    if "ingest" in only and run(
        "ingest",
        # the fastest of three runs: one ingest is a few seconds, so another process's burst on these shared
        # cores moves a single run by up to 40%
        [py, str(BENCH / "ingest.py"), "--repeat", "3"] + (["--events", "2000000"] if args.quick else []),
        notes,
        timeout,
    ):
        results["ingest"] = fresh_json(RESULTS / "ingest.json", started, "ingest", notes)

    customers = "10000" if args.quick else "100000"
    log_path = None
    if {"throughput", "peer"} & only and (BENCH / "throughput.py").exists():
        made = subprocess.run(
            [py, str(BENCH / "throughput.py"), "--generate", "--customers", customers],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        log_path = made.stdout.strip().splitlines()[-1] if made.returncode == 0 else None
        if log_path is None:
            notes.append("throughput: generating the log failed")
    if (
        "throughput" in only
        and log_path
        and run(
            "throughput",
            [py, str(BENCH / "throughput.py"), "--log", log_path, *quick, *threads],
            notes,
            timeout,
        )
    ):
        results["throughput"] = fresh_json(RESULTS / "throughput.json", started, "throughput", notes)

    if "peer" in only and log_path:
        if not (PEER_VENV / "bin" / "python").exists() and args.peer:
            install_peer(notes)
        if (PEER_VENV / "bin" / "python").exists():
            steps = ["--steps", "20" if args.quick else "50"]
            results["peer"] = capture(
                "peer (pytorch-lifestream 0.6.0)",
                [
                    str(PEER_VENV / "bin" / "python"),
                    str(BENCH / "lifestream_peer.py"),
                    "--log",
                    log_path,
                    *steps,
                    *threads,
                ],
                notes,
                timeout,
            )
            if results["peer"]:
                (RESULTS / "peer.json").write_text(json.dumps(results["peer"], indent=1) + "\n")
        else:
            notes.append(
                f"peer: {PEER_VENV} does not exist; run with --peer to install pytorch-lifestream 0.6.0"
            )

    if "faiss" in only and run(
        "faiss", [py, str(BENCH / "faiss_bench.py"), *quick, *threads], notes, timeout
    ):
        results["faiss"] = fresh_json(RESULTS / "faiss.json", started, "faiss", notes)

    if "service" in only and run(
        "service",
        [py, str(BENCH / "service.py")] + (["--seconds", "3"] if args.quick else []),
        notes,
        timeout,
    ):
        results["service"] = fresh_json(RESULTS / "service.json", started, "service", notes)

    carry_over(results, only, notes)
    header = (
        f"# segment-engine benchmarks{' (--quick)' if args.quick else ''}\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, threads {args.threads or 'default'}, "
        f"{time.time() - started:.0f} s in all."
    )
    rows = figures(results)
    text = markdown(rows, notes, header)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.md").write_text(text)
    (RESULTS / "results.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "threads": args.threads,
                "notes": notes,
                "rows": rows,
                "benchmarks": results,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    print("\n" + text)
    print(f"wrote {(RESULTS / 'results.md').relative_to(ROOT)} and results.json")


if __name__ == "__main__":
    main()
