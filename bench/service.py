"""Service benchmark: serve.py in a subprocess on 127.0.0.1, requests over loopback from this process.

    python bench/service.py [--customers 2000] [--items 50000] [--seconds 10] [--bundle DIR] [--model gru] [--keep DIR]

Without --bundle, a bundle is trained once with train.py (the default model, one short epoch: the figures are
about serving, not quality) on a generated log, and cached (under /tmp, or in --keep DIR). Each endpoint is
driven by one client in a closed loop for --seconds: GET /customers/{id}, POST /score with a 100-event
history (as a new customer, and as a known one with 5 new events), POST /lookalike for 1% of the base, POST /recommend with a 100-event history (new, and known + 5 events),
GET /customers/{id}/recommendations and GET /segments/{id}/items, over a catalogue of --items items. The
server runs with one torch thread (serve.py's default), pinned to one CPU (--server-cpu) while this client
runs on the others; the load average is recorded, since other work on the machine shows in the tail. Targets: /score p99 < 20 ms
on one CPU core for a 100-event history (issue: real-time scoring); POST /recommend p99 <= 20 ms with a
100-event history over 50k items (issue: recommendations). Prints a table and writes bench/results/service.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "service.json"
HISTORY = 100


def build_bundle(customers: int, model: str, keep: str | None, items: int = 2000) -> Path:
    """The cached bundle for this size and model, trained with train.py when absent."""
    from engine.data.synthetic import SyntheticConfig, write

    root = Path(keep or Path(tempfile.gettempdir()) / f"segment-engine-bench/service-{customers}-{items}-{model}")
    bundle = root / "bundle"
    if (bundle / "manifest.json").exists():
        from engine.bundle import Bundle, BundleError

        try:
            Bundle.load(bundle, eager_model=True)
            return bundle
        except BundleError as err:  # e.g. trained by an older version of the model
            print(f"cached bundle unusable, training again: {err}", flush=True)
    events = write(SyntheticConfig(n_customers=customers, n_items=items, seed=0), root / "data")
    print(f"training a bundle of {customers} customers ({model}) into {bundle} ...", flush=True)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"data.path={events}",
            f"out_dir={bundle}",
            f"model={model}",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=5",
            "++trainer.limit_val_batches=1",
            "segment.k=16",
            "segment.nredo=1",
            "data.min_count=1",  # every item of the catalogue that was bought is a known item
        ],
        check=True,
        cwd=root,
        stdout=subprocess.DEVNULL,
    )
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    return bundle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, cpu: int | None) -> tuple[subprocess.Popen, str]:
    """serve.py on a free port, pinned to one CPU when ``cpu`` is given (this process then keeps the others)."""
    port = free_port()
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), f"bundle={bundle}", f"port={port}", "log_level=warning"],
        cwd=tempfile.gettempdir(),
        preexec_fn=pin,
    )
    if cpu is not None:
        os.sched_setaffinity(0, (os.sched_getaffinity(0) - {cpu}) or {cpu})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"serve.py did not answer on {url}")


def requests(bundle: Path, rng: np.random.Generator) -> dict[str, callable]:
    """Endpoint name -> a function that sends one request with a client and returns the response."""
    from engine.bundle import Bundle
    from engine.embed.online import stored_events

    customers = Bundle.load(bundle).customers
    store = customers.store
    ids = customers.ids.to_pylist()
    long = np.flatnonzero(store.lengths() >= HISTORY)
    rows = rng.choice(long if len(long) else np.arange(len(ids)), size=min(50, len(ids)), replace=False)
    histories = [stored_events(store, row)[-HISTORY:] for row in rows]
    extra = [[{**h[-1], "ts": h[-1]["ts"] + 3600 * (j + 1)} for j in range(5)] for h in histories]
    pick = lambda seq: seq[rng.integers(len(seq))]  # noqa: E731

    def known(http, path="/score"):
        i = rng.integers(len(rows))
        return http.post(path, json={"customer_id": ids[rows[i]], "events": extra[i]})

    k = len(Bundle.load(bundle).centroids)

    return {
        "GET /customers/{id}": lambda http: http.get(f"/customers/{pick(ids)}"),
        f"POST /score ({HISTORY} events, new)": lambda http: http.post(
            "/score", json={"events": pick(histories)}
        ),
        "POST /score (known + 5 events)": known,
        "POST /lookalike (1% of base)": lambda http: http.post(
            "/lookalike",
            json={"seed_ids": list(rng.choice(ids, size=5, replace=False)), "fraction": 0.01,
                  "method": "nearest_seeds"},
        ),
        # the default since the real-log benchmark (bench/quality.py): a logistic regression per request
        "POST /lookalike (1% of base, signature)": lambda http: http.post(
            "/lookalike", json={"seed_ids": list(rng.choice(ids, size=50, replace=False)), "fraction": 0.01}
        ),
        f"POST /recommend ({HISTORY} events, new)": lambda http: http.post(
            "/recommend", json={"events": pick(histories), "n": 20}
        ),
        "POST /recommend (known + 5 events)": lambda http: known(http, "/recommend"),
        f"POST /recommend ({HISTORY} events, new_only)": lambda http: http.post(
            "/recommend", json={"events": pick(histories), "n": 20, "new_only": True}
        ),
        "GET /customers/{id}/recommendations": lambda http: http.get(f"/customers/{pick(ids)}/recommendations"),
        "GET /segments/{id}/items": lambda http: http.get(f"/segments/{rng.integers(k)}/items"),
    }


def drive(url: str, send, seconds: float) -> dict:
    """One client, closed loop, for ``seconds`` after a short warm-up: requests/s and latency percentiles."""
    latencies, errors = [], 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(20):
            send(http)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            status = send(http).status_code
            latencies.append(time.perf_counter() - t)
            errors += status != 200
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "errors": errors,
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main() -> None:
    from engine.bundle import Bundle

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--items", type=int, default=50_000, help="catalogue size of the generated log")
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint")
    parser.add_argument("--bundle", help="serve this bundle instead of training one")
    parser.add_argument("--model", default="gru", help="model config group when training (gru, transformer)")
    parser.add_argument("--keep", help="cache directory for the generated log and trained bundle")
    parser.add_argument(
        "--server-cpu",
        type=int,
        default=0 if len(os.sched_getaffinity(0)) > 1 else None,
        help="pin the server to this CPU (default 0 when there are several; -1: no pinning)",
    )
    args = parser.parse_args()
    cpu = None if args.server_cpu is None or args.server_cpu < 0 else args.server_cpu
    bundle = Path(args.bundle) if args.bundle else build_bundle(args.customers, args.model, args.keep, args.items)
    send = requests(bundle, np.random.default_rng(0))
    process, url = start_server(bundle, cpu)
    try:
        health = httpx.get(f"{url}/health").json()
        results = {}
        print(f"\n{'endpoint':38s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
        for name, request in send.items():
            r = results[name] = drive(url, request, args.seconds)
            print(
                f"{name:38s} {r['requests_per_s']:8.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7d}",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = (manifest.get("config") or {}).get("model") or {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bundle": str(bundle),
                "customers": health["counts"]["customers"],
                "items": len(Bundle.load(bundle).vocabs["item_id"]) - 1,
                "segments": health["counts"]["segments"],
                "model": {k: model.get(k) for k in ("dim", "out_dim")}
                | {"encoder": (model.get("encoder") or {}).get("_target_")},
                "history_events": HISTORY,
                "seconds_per_endpoint": args.seconds,
                "server_torch_threads": 1,
                "server_cpu": cpu,
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "machine": platform.processor() or platform.machine(),
                "endpoints": results,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
