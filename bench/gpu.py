"""The CUDA path measured in one command on one GPU, each figure beside its reference in the same run.

    python bench/gpu.py [--out DIR] [--budget-s 420] [--smoke] [--profile] [KEY=VALUE ...]

Phases, in this order; each is time-bounded (its cap, and what is left of ``--budget-s``), and one that fails
or runs out of time records its error while the others still run:

- data: ``--customers`` generated customers (~64 events each) in parallel parts of distinct ids, loaded.
- tests: the pytest tests marked ``gpu``, in a subprocess started alongside the data phase and waited for
  before anything is timed (pass / fail recorded).
- training: Lightning ``Trainer.fit`` (``trainer=gpu``, bf16-mixed) against the bare loop on the very same
  batches (bench/throughput.py's StepClock); events/s and customers/s of the CoLES views.
- embedding: ``pipeline.embed`` over the whole base (host-to-device copies and the EmbeddingWriter included)
  against the bare forward over the same predict batches (the mean of a pass before and one after);
  ``nvidia-smi`` utilisation sampled in a background thread during ``pipeline.embed``.
- equality: the same ``--sample`` customers embedded on the CPU (fp32) and on the device (fp32 and
  bf16-mixed): cosine per customer, and the share assigned to the same of 16 segments.
- kmeans: 1M x 64 into 256, spherical k-means in torch on the device against the engine's
  ``spherical_kmeans`` (FAISS, CPU) and ``faiss.Kmeans`` (bench/faiss_bench.py), and the assignments of both
  implementations to the same centroids.
- lookalike: the exact top-1000 of 1M vectors for 100 seeds, torch matmul + topk on the device against
  ``lookalike()`` over the flat FAISS index and ``index.search`` (bench/faiss_bench.py), and their overlap.
- end_to_end: ``train.py stage=embed`` (``trainer=gpu``) over the whole base, with the training phase's model in
  a stage=fit bundle: read, embedded, segmented, indexed and written, timed from the command's start, with
  its phases from the log.

Peak GPU memory (torch.cuda.max_memory_allocated) is kept per phase. Without CUDA everything runs on the CPU
(``--smoke``: tiny sizes, seconds; the CI test) and the device-only targets are marked not measured. Trailing
KEY=VALUE are Hydra overrides for every composed config. Writes DIR/gpu.md and DIR/gpu.json after every
phase, prints progress; asserts nothing. Targets (issue 17, one H200): embedding >= 1,000,000 customers/s and
>= 0.8 of the bare forward; training >= 5,000,000 events/s and >= 0.8 of the bare loop; 1M customers end to
end in < 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
RESULTS = ROOT / "bench" / "results"
MEAN_EVENTS = 64.0
FULL = {"customers": 1_000_000, "parts": 16, "steps": 30, "warmup": 5, "sample": 10_000, "vectors": 1_000_000,
        "segments": 256, "audience": 1000, "queries": 20}
SMOKE = {"customers": 400, "parts": 2, "steps": 3, "warmup": 1, "sample": 100, "vectors": 5000, "segments": 16,
         "audience": 50, "queries": 4}
# What the runs compose beside the defaults (stated in gpu.md): trainer=gpu on CUDA; at full size there,
# batches that fill the device and collation in 12 worker processes (of 16 cores); --smoke, a small model.
ON_DEVICE = ["trainer=gpu"]
FULL_ON_DEVICE = ["loader.batch_size=1024", "loader.predict_batch_size=4096", "loader.num_workers=12"]
SMOKE_SETTINGS = ["loader.batch_size=16", "loader.predict_batch_size=128", "model.dim=32", "model.out_dim=16",
                  "model.item_head_size=512"]
CAPS = {"tests": 120, "data": 120, "training": 90, "embedding": 120, "equality": 60, "kmeans": 60,
        "lookalike": 45, "end_to_end": 240}  # seconds at most per phase
CHECK_SEGMENTS = 16  # segments of the equality sample
# train.py stage=embed's phases, each (name, the log line that ends it): the first such line, else its end
E2E_PHASES = [("start-up and imports", r"Successfully loaded faiss"),
              ("read and pack the log", r"-> \d+ customers, \d+ events"),
              ("embed: Lightning predict, writer, merge", r"merged \d+ part"),
              ("forecast, embeddings.parquet, store", r"spherical k-means: n="),
              ("segment: k=auto, k-means, hierarchy", r"hierarchy: k="),
              ("profiles, index, report", r"report written to"), ("commit and exit", None)]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


class PhaseTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float, name: str):
    """Raise PhaseTimeout in the main thread once ``seconds`` have passed (between Python bytecodes)."""

    def expire(signum, frame):
        raise PhaseTimeout(f"{name}: did not finish in {seconds:.0f} s; stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def utilisation(samples: list[tuple[float, float]]):
    """(GPU utilisation %, memory used MiB) from ``nvidia-smi -lms 200``, read by a background thread while the
    block runs; nothing when nvidia-smi is missing."""
    query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
             "-lms", "200"]
    try:
        smi = subprocess.Popen(query, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        yield
        return

    def read() -> None:
        for line in smi.stdout:
            with contextlib.suppress(ValueError):
                samples.append(tuple(float(v) for v in line.split(",")[:2]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        smi.terminate()
        reader.join(2)


def _write_part(task: tuple[int, int, str]) -> str:
    """One part of the base, generated with seed ``part``; its customer ids are prefixed, so no two parts share
    one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from engine.data.synthetic import SyntheticConfig, generate

    part, customers, out = task
    events, _ = generate(SyntheticConfig(n_customers=customers, mean_events=MEAN_EVENTS, seed=part))
    ids = pc.binary_join_element_wise(f"p{part:02d}-", events["customer_id"], "")
    events = events.set_column(events.schema.get_field_index("customer_id"), "customer_id", ids)
    path = Path(out) / f"part-{part:03d}.parquet"
    pq.write_table(events, path)
    return str(path)


class Bench:
    """The run: sizes, device, composed configs, what phases hand each other, and the results written."""

    def __init__(self, args):
        import torch

        self.args, self.size = args, dict(SMOKE if args.smoke else FULL)
        threads = args.threads or (1 if args.smoke else None)  # 2 threads on 2 busy cores wait on each other
        if threads:
            import faiss

            torch.set_num_threads(threads)
            faiss.omp_set_num_threads(threads)
            os.environ["OMP_NUM_THREADS"] = str(threads)  # the pytest and train.py subprocesses
        self.size["customers"] = args.customers or self.size["customers"]
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        sizes = SMOKE_SETTINGS if args.smoke else FULL_ON_DEVICE if self.cuda else []
        self.overrides = (ON_DEVICE if self.cuda else []) + sizes + args.overrides
        self.work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
        self.state: dict = {}
        self.started = time.perf_counter()
        self.result = {"smoke": args.smoke, "environment": environment(), "threads": threads,
                       "sizes": self.size, "overrides": self.overrides, "budget_s": args.budget_s, "phases": {}}

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def config(self, path, name: str, extra: list[str] = (), drop: str | None = None):
        """The default config over ``path`` with this run's overrides (less those starting with ``drop``) and
        ``extra``; its bundle and work directories under ``name``."""
        import throughput

        overrides = [o for o in self.overrides if not (drop and o.startswith(drop))] + list(extra)
        return throughput.compose(str(path), str(self.work / name), self.size["steps"], overrides)

    def needs(self, key: str):
        if key not in self.state:
            raise RuntimeError(f"needs the {key} of an earlier phase, which did not finish")
        return self.state[key]

    def trained(self):
        """(config, model, datamodule) of the training phase, or an untrained model on the same data."""
        if "model" not in self.state:
            from hydra.utils import instantiate

            from engine import pipeline

            cfg, data = self.config(self.needs("base"), "untrained"), self.needs("data")
            dm = pipeline.datamodule(cfg, data)
            vocab_sizes = [len(data.store.vocabs[f]) for f in ("event_type", "item_id", "category", "channel")]
            model = instantiate(cfg.model, vocab_sizes=vocab_sizes, spend_scale=dm.spend_scale, _convert_="all")
            self.state.update(cfg=cfg, model=model, dm=dm)
            self.result.setdefault("notes", []).append("training did not finish: an untrained model was used")
        return self.state["cfg"], self.state["model"], self.state["dm"]

    def phase(self, name: str, measure) -> None:
        """Run one phase under its deadline; its figures, status, seconds and peak GPU memory are recorded."""
        record = {"status": "skipped", "seconds": 0.0}
        limit = min(CAPS[name], self.left() - 5)
        if limit < 5:
            record["error"] = f"{self.left():.0f} s of the budget left"
        else:
            print(f"\n== {name} (at most {limit:.0f} s; {self.left():.0f} s of the budget left) ==", flush=True)
            if self.cuda:
                import torch

                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                with deadline(limit, name):
                    record["figures"] = measure(self)
                record["status"] = "ok"
            except Exception as err:  # recorded and shown; the next phase still runs
                stopped = isinstance(err, (PhaseTimeout, subprocess.TimeoutExpired))
                record["status"] = "timeout" if stopped else "failed"
                record["error"] = f"{type(err).__name__}: {err}"[:2000]
                traceback.print_exc()
            record["seconds"] = round(time.perf_counter() - start, 2)
            if self.cuda:
                import torch

                record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            print(f"== {name}: {record['status']} in {record['seconds']:.1f} s {record.get('error', '')}",
                  flush=True)
        self.result["phases"][name] = record
        self.save()

    def save(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        self.result["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.result["targets"], self.result["checks"] = targets(self), checks(self.result["phases"])
        (out / "gpu.json").write_text(json.dumps(self.result, indent=1, default=str) + "\n")
        (out / "gpu.md").write_text(markdown(self.result))


def environment() -> dict:
    """Versions, device and CPU count of this machine."""
    import faiss
    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "faiss": faiss.__version__,
           "faiss_gpu": hasattr(faiss, "StandardGpuResources"), "cpus": os.cpu_count(),
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA)"}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    return env


def start_gpu_tests(work: Path) -> tuple | None:
    """pytest -m gpu over the test files that use the marker, started in the background (it runs alongside the
    data phase, which times nothing the targets read); (files, process, log), or None without such a file."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text())
    if not files:
        return None
    log = work / "pytest-gpu.log"
    with open(log, "w") as out:
        command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files]
        return files, subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT), log


def gpu_tests(b: Bench) -> dict:
    """Wait for the gpu-marker tests (before anything is timed) and read their summary."""
    if b.state.get("tests") is None:
        return {"files": [], "summary": "no test carries the gpu marker", "passed": True}
    files, process, log = b.state["tests"]
    try:
        returncode = process.wait(timeout=max(b.left() - 10, 5))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = log.read_text().strip().splitlines()
    print("\n".join(lines[-30:]), flush=True)
    summary = lines[-1] if lines else ""
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return {"files": files, "returncode": returncode, "summary": summary, **counts, "passed": returncode == 0}


def data(b: Bench) -> dict:
    """Generate the base in parallel parts (cached under /tmp) and load it as the pipeline does."""
    from engine import pipeline
    from engine.data.memory import keep_freed_memory

    parts, customers = b.size["parts"], b.size["customers"]
    base = Path(tempfile.gettempdir()) / f"segment-engine-bench/gpu-{customers}x{MEAN_EVENTS:g}-{parts}"
    t0 = time.perf_counter()
    if not (base / "complete").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        tasks = [(p, -(-customers // parts), str(base)) for p in range(parts)]
        with ProcessPoolExecutor(min(parts, os.cpu_count() or 1), mp_context=get_context("spawn")) as pool:
            list(pool.map(_write_part, tasks))
        (base / "complete").touch()
    generated = time.perf_counter() - t0
    cfg = b.config(base, "load")
    t0 = time.perf_counter()
    loaded = pipeline.load_data(cfg)
    load = time.perf_counter() - t0
    keep_freed_memory()  # what the model's setup does for Lightning; the bare loops then share it
    b.state.update(base=base, data=loaded)
    store = loaded.store
    return {"path": str(base), "customers": store.n_customers, "events": store.n_events,
            "generate_s": round(generated, 2), "load_s": round(load, 2),
            "load_events_per_s": round(store.n_events / load)}


def training(b: Bench) -> dict:
    import throughput

    cfg = b.config(b.needs("base"), "training")
    figures, model, dm = throughput.measure_training(cfg, b.needs("data"), b.size["warmup"], b.args.profile)
    b.state.update(cfg=cfg, model=model, dm=dm)
    return {"precision": str(cfg.trainer.precision), **figures}


def embedding(b: Bench) -> dict:
    """pipeline.embed between two bare forward passes over its predict batches (bench/throughput.py)."""
    import throughput

    from engine import pipeline

    cfg, model, dm = b.trained()
    data, samples = b.needs("data"), []
    predict = pipeline.datamodule(cfg, data, dm.spend_scale)
    before = throughput.bare_embedding(cfg, model, predict, b.device)
    model.cpu()  # pipeline.embed moves it, as in the nightly job
    t0 = time.perf_counter()
    with utilisation(samples), throughput._profiled(b.args.profile, "pipeline.embed"):
        arrays = pipeline.embed(cfg, model, data, dm.spend_scale)
    wall = time.perf_counter() - t0
    after = throughput.bare_embedding(cfg, model, predict, b.device)
    forward, n = (before[0] + after[0]) / 2, data.store.n_customers
    util = np.array(samples).reshape(-1, 2)
    smi = lambda f, column: round(float(f(util[:, column])), 1) if len(util) else None  # noqa: E731
    return {"customers": n, "predict_batch_size": int(cfg.loader.predict_batch_size),
            "embed_wall_s": round(wall, 3), "embed_bare_forward_s": round(forward, 3),
            "embed_bare_forward_runs_s": [round(before[0], 3), round(after[0], 3)],
            "embed_collate_s": round(before[1], 3), "embed_customers_per_s": round(n / wall),
            "embed_bare_customers_per_s": round(n / forward), "embed_ratio": round(forward / wall, 3),
            "embed_padding": round(before[2], 3), "embed_complete": len(arrays["embedding"]) == n,
            "smi_samples": len(util), "smi_utilisation_mean": smi(np.mean, 0),
            "smi_utilisation_max": smi(np.max, 0), "smi_memory_max_mib": smi(np.max, 1)}


def equality(b: Bench) -> dict:
    """The same customers embedded on the CPU (fp32) and on the device (fp32, bf16-mixed); segments alike."""
    from engine import pipeline
    from engine.segment.kmeans import assign, spherical_kmeans

    _, model, dm = b.trained()
    data = b.needs("data")
    rows = np.sort(np.random.default_rng(0).permutation(data.store.n_customers)[:b.size["sample"]])
    sample = pipeline.Data(data.store.take(rows), {}, data.as_of)
    base = b.needs("base")

    def embed(name, extra, drop):
        return pipeline.embed(b.config(base, name, extra, drop), model, sample, dm.spend_scale)["embedding"]

    cpu = embed("cpu", [], "trainer")
    device = {p: embed(p, [f"trainer.precision={p}"], "trainer.precision") for p in ("32-true", "bf16-mixed")}
    k = min(CHECK_SEGMENTS, len(rows) // 10)
    centroids, _ = spherical_kmeans(cpu, k, seed=0)
    labels = assign(cpu, centroids)[0]
    figures = {"customers": len(rows), "segments": k, "device": str(b.device)}
    unit = cpu / np.maximum(np.linalg.norm(cpu, axis=1, keepdims=True), 1e-12)
    for precision, vectors in device.items():
        cosine = np.sum(unit * vectors, axis=1) / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        agreement = float(np.mean(assign(vectors, centroids)[0] == labels))
        figures[precision] = {"cosine_min": round(float(cosine.min()), 6),
                              "cosine_mean": round(float(cosine.mean()), 6),
                              "cosine_p01": round(float(np.percentile(cosine, 1)), 6),
                              "segment_agreement": round(agreement, 4)}
    return figures


def torch_kmeans(x, k: int, niter: int, seed: int = 0):
    """Spherical k-means on x's device, k rows of x to start.

    x: float32 [n, d] L2-normalised -> (centroids float32 [k, d], labels int64 [n])."""
    import torch

    generator = torch.Generator(device=x.device).manual_seed(seed)
    centroids = x[torch.randperm(len(x), device=x.device, generator=generator)[:k]].clone()
    for _ in range(niter):
        labels = (x @ centroids.T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        norms = sums.norm(dim=1, keepdim=True)
        centroids = torch.where(norms > 0, sums / norms.clamp_min(1e-12), centroids)  # an empty one stays
    return centroids, (x @ centroids.T).argmax(dim=1)


def kmeans(b: Bench) -> dict:
    """1M x 64 into 256: torch on the device (the best of 3, after a warm-up) against the CPU figures."""
    import faiss_bench
    import torch

    from engine.segment.kmeans import assign, spherical_kmeans

    n, k, niter = b.size["vectors"], b.size["segments"], 25
    x, group = faiss_bench.clustered(n)
    b.state["vectors"] = (x, group)
    cpu = faiss_bench.time_kmeans(x, niter, 1, 1)
    t0 = time.perf_counter()
    xd = torch.from_numpy(x).to(b.device)
    b.sync()
    copy = time.perf_counter() - t0
    torch_kmeans(xd, k, 2)
    times = []
    for _ in range(3):
        b.sync()
        t0 = time.perf_counter()
        centroids, labels = torch_kmeans(xd, k, niter)
        b.sync()
        times.append(time.perf_counter() - t0)
    centroids, labels = centroids.cpu().numpy(), labels.cpu().numpy()
    ours_cpu, ours_labels = spherical_kmeans(x, k, seed=0, niter=niter, nredo=1)
    objective = lambda c, lab: float(np.mean(np.sum(x * c[lab], axis=1)))  # noqa: E731  cosine to own centroid
    return {"n": n, "dim": x.shape[1], "segments": k, "niter": niter, "device_s": round(min(times), 4),
            "device_all_s": [round(t, 4) for t in times], "copy_to_device_s": round(copy, 4), **cpu,
            "device_mean_cosine": round(objective(centroids, labels), 5),
            "cpu_mean_cosine": round(objective(ours_cpu, ours_labels), 5),
            "assign_agreement": round(float(np.mean(assign(x, centroids)[0] == labels)), 5)}


def lookalike(b: Bench) -> dict:
    """Exact top-``audience`` for 100 seeds of one planted group: torch matmul + topk against FAISS flat."""
    import faiss_bench
    import torch

    from engine.index.index import build_index

    x, group = b.state.get("vectors") or faiss_bench.clustered(b.size["vectors"])
    size, seeds = b.size["audience"], faiss_bench.seed_sets(group, b.size["queries"])
    cpu, audiences = faiss_bench.time_lookalike(build_index(x, np.arange(len(x)), kind="flat"), x, seeds, size)
    xd = torch.from_numpy(x).to(b.device)

    def top(rows: np.ndarray) -> np.ndarray:
        chosen = torch.as_tensor(rows, device=b.device)
        query = torch.nn.functional.normalize(xd[chosen].mean(dim=0), dim=0)
        ids = torch.topk(xd @ query, size + len(rows)).indices
        return ids[~torch.isin(ids, chosen)][:size].cpu().numpy()  # .cpu() waits for the device

    top(seeds[0])
    times, overlap = [], []
    for rows, exact in zip(seeds, audiences, strict=True):
        t0 = time.perf_counter()
        found = top(rows)
        times.append(time.perf_counter() - t0)
        overlap.append(len(np.intersect1d(found, exact)) / size)
    ms = lambda q: round(1e3 * float(np.percentile(times, q)), 3)  # noqa: E731
    return {"n": len(x), "audience": size, "queries": len(seeds), "device_p50_ms": ms(50),
            "device_p99_ms": ms(99), **{f"cpu_{k}": v for k, v in cpu.items()},
            "overlap_min": round(float(np.min(overlap)), 4)}


def fit_bundle(b: Bench, path: Path) -> Path:
    """The bundle stage=fit writes (model, vocabularies, manifest), of the training phase's model; its store is
    left out, since stage=embed reads the log."""
    from engine import pipeline
    from engine.bundle.writer import BundleWriter
    from engine.model.io import MODEL_FILE, save_model

    cfg, model, _ = b.trained()
    data = b.needs("data")
    with BundleWriter(path) as bundle:
        pipeline.describe(cfg, bundle, data, model, "fit")
        save_model(model, cfg.model, data.store.vocabs, bundle.path / MODEL_FILE,
                   extra={"predict_max_len": cfg.loader.predict_max_len})
    return path


def end_to_end(b: Bench) -> dict:
    """train.py stage=embed over the whole base with the training phase's model, timed from its start."""
    base, bundle = b.needs("base"), fit_bundle(b, b.work / "fitted")
    out, log_path = b.work / "nightly", b.work / "nightly.log"
    command = [sys.executable, str(ROOT / "train.py"), "stage=embed", f"bundle={bundle}", f"data.path={base}",
               f"out_dir={out}", "trainer.enable_progress_bar=false", *b.overrides]
    print(" ".join(command), flush=True)
    started, t0 = time.time(), time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              timeout=max(b.left() - 10, 5), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    text = log_path.read_text()
    print("\n".join(text.strip().splitlines()[-12:]), flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"train.py stage=embed exited with {done.returncode}: {text[-1500:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"seconds": round(wall, 2), "customers": manifest["counts"]["customers"], "k": manifest.get("k"),
            "phases_s": e2e_phases(text, started, time.time()),
            "command": " ".join(command[1:])}


def e2e_phases(log: str, start: float, end: float) -> dict[str, float]:
    """Seconds per phase of train.py's log (E2E_PHASES), from the epoch seconds it started and ended."""

    def stamp(pattern: str) -> float | None:
        for line in log.splitlines():
            if (m := STAMP.match(line)) and re.search(pattern, line):
                seconds = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))  # local, as logged
                return seconds + int(m.group(1)[20:]) / 1e3
        return None

    marks = [start]
    for _, pattern in E2E_PHASES:
        marks.append(end if pattern is None else stamp(pattern) or marks[-1])
    return {name: round(b - a, 2) for (name, _), a, b in zip(E2E_PHASES, marks[:-1], marks[1:], strict=True)}


def targets(b: Bench) -> list[dict]:
    """The issue's targets, each met, not met or not measured (no CUDA, smoke sizes, the phase failed)."""
    phases = b.result["phases"]
    rows = []
    for phase, key, name, bound, higher in (
        ("embedding", "embed_customers_per_s", "embedding customers/s >= 1,000,000", 1e6, True),
        ("embedding", "embed_ratio", "embedding / bare forward >= 0.8", 0.8, True),
        ("training", "train_events_per_s", "training events/s >= 5,000,000", 5e6, True),
        ("training", "train_ratio", "training / bare loop >= 0.8", 0.8, True),
        ("end_to_end", "seconds", "1M customers embedded, segmented, indexed (stage=embed) < 60 s", 60, False),
    ):
        value = (phases.get(phase, {}).get("figures") or {}).get(key)
        if value is None:
            verdict = "not measured (phase " + phases.get(phase, {}).get("status", "not run") + ")"
        elif not b.cuda:
            verdict = "not measured (no CUDA)"
        elif b.size["customers"] != FULL["customers"]:
            verdict = f"not measured ({b.size['customers']:,} customers)"
        else:
            verdict = "met" if (value >= bound if higher else value < bound) else "not met"
        rows.append({"target": name, "value": value, "verdict": verdict})
    return rows


def checks(phases: dict) -> list[dict]:
    """The equality checks (and the gpu-marker tests) of the phases that ran: value, threshold, passed."""
    f = {name: p.get("figures") or {} for name, p in phases.items()}
    rows = []

    def add(check: str, value, threshold: str, passed) -> None:
        rows.append({"check": check, "value": value, "threshold": threshold, "passed": bool(passed)})

    if f.get("tests"):
        add("gpu-marker tests pass", f["tests"]["summary"], "exit 0", f["tests"]["passed"])
    for precision, cosine, agree in (("32-true", 0.999, 0.99), ("bf16-mixed", 0.99, 0.95)):
        if e := f.get("equality", {}).get(precision):
            name = f"device {precision} vs CPU fp32"
            add(f"{name}: cosine of every customer (min)", e["cosine_min"], f"> {cosine}",
                e["cosine_min"] > cosine)
            add(f"{name}: share in the same segment", e["segment_agreement"], f">= {agree}",
                e["segment_agreement"] >= agree)
    if k := f.get("kmeans"):
        add("k-means: torch and FAISS assign to the same centroid", k["assign_agreement"], ">= 0.999",
            k["assign_agreement"] >= 0.999)
    if la := f.get("lookalike"):
        add("lookalike: device top-k overlap with FAISS exact (min)", la["overlap_min"], ">= 0.99",
            la["overlap_min"] >= 0.99)
    return rows


def figures(phases: dict) -> list[tuple]:
    """(figure, ours, reference, reference value, format, higher is better) rows from the phases that ran."""
    f = {name: p.get("figures") or {} for name, p in phases.items()}
    t, e, k, la = f.get("training"), f.get("embedding"), f.get("kmeans"), f.get("lookalike")
    rows = []
    if t:
        rows += [("training events/s (CoLES views)", t["train_events_per_s"], "bare loop, same batches",
                  t["train_bare_events_per_s"], "{:,.0f}", True),
                 (f"training customers/s ({t['batch_customers']:,} per step)", t["train_customers_per_s"],
                  "bare loop, same batches", t["train_bare_customers_per_s"], "{:,.0f}", True)]
    if e:
        rows.append((f"batch embedding customers/s ({e['customers']:,})", e["embed_customers_per_s"],
                     "bare forward, same batches", e["embed_bare_customers_per_s"], "{:,.0f}", True))
    if k:
        name = f"k-means s, {k['n']:,} x {k['dim']} into {k['segments']} (device, torch)"
        rows += [(name, k["device_s"], "spherical_kmeans (FAISS, CPU)", k["kmeans_s"], "{:.3f}", False),
                 (name, k["device_s"], "faiss.Kmeans + assign (CPU)", k["kmeans_faiss_s"], "{:.3f}", False)]
    if la:
        for q in ("p50", "p99"):
            name = f"lookalike exact top-{la['audience']:,} of {la['n']:,} {q} ms (device, torch)"
            ours = la[f"device_{q}_ms"]
            rows += [(name, ours, "lookalike() over FAISS flat (CPU)", la[f"cpu_{q}_ms"], "{:.2f}", False),
                     (name, ours, "index.search, FAISS flat (CPU)", la[f"cpu_faiss_{q}_ms"], "{:.2f}", False)]
    return rows


def markdown(r: dict) -> str:
    env, show = r["environment"], lambda v, fmt="{}": "—" if v is None else fmt.format(v)  # noqa: E731
    lines = [f"# GPU benchmark{' (--smoke)' if r['smoke'] else ''}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {env['device']} ({env.get('nvidia_smi', 'no nvidia-smi')}), "
             f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, faiss {env['faiss']} (GPU: "
             f"{'yes' if env['faiss_gpu'] else 'no'}), {env['cpus']} CPUs, threads "
             f"{r['threads'] or 'default'}; "
             f"{r['sizes']['customers']:,} customers x ~{MEAN_EVENTS:g} events; overrides "
             f"`{' '.join(r['overrides'])}`; {r['elapsed_s']:.0f} s of a {r['budget_s']:.0f} s budget.",
             "", "| target | measured | verdict |", "| --- | ---: | --- |"]
    for t in r["targets"]:
        fmt = "{:,.3f}" if (t["value"] or 0) < 100 else "{:,.0f}"
        lines.append(f"| {t['target']} | {show(t['value'], fmt)} | {t['verdict']} |")
    lines += ["", "| figure | ours | reference (same run) | reference value | ratio |",
              "| --- | ---: | --- | ---: | ---: |"]
    for name, ours, ref, value, fmt, higher in figures(r["phases"]):
        ratio = (ours / value if higher else value / ours) if ours and value else None
        lines.append(f"| {name} | {fmt.format(ours)} | {ref} | {fmt.format(value)} | {show(ratio, '{:.2f}')} |")
    lines += ["", "ratio > 1 is better for the device path (throughput: ours / reference; seconds: reference / "
              "ours).", "", "| check | value | threshold | passed |", "| --- | ---: | --- | --- |"]
    lines += [f"| {c['check']} | {c['value']} | {c['threshold']} | {'yes' if c['passed'] else 'NO'} |"
              for c in r["checks"]]
    lines += ["", "| phase | status | seconds | peak GPU MB | where the time went, or the error |",
              "| --- | --- | ---: | ---: | --- |"]
    for name, p in r["phases"].items():
        note = (p.get("error") or phase_note(name, p.get("figures") or {})).replace("|", "/").replace("\n", " ")
        peak = show(p.get("peak_gpu_mb"), "{:,.0f}")
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.1f} | {peak} | {note} |")
    lines += ["", *[f"- {note}" for note in r.get("notes", [])]]
    return "\n".join(lines).rstrip() + "\n"


def phase_note(name: str, f: dict) -> str:
    """One line of where a phase's time went."""
    if not f:
        return ""
    if name == "training":
        step = lambda key: f"{1e3 * f[key] / f['steps']:.1f}"  # noqa: E731
        return (f"per step {step('train_pipeline_s')} ms pipeline, {step('train_bare_s')} bare, "
                f"{step('train_collate_s')} collate; padding {f['train_padding']:.0%}")
    if name == "embedding":
        return (f"wall {f['embed_wall_s']:.2f} s, bare forward {f['embed_bare_forward_s']:.2f} s, collate "
                f"{f['embed_collate_s']:.2f} s; nvidia-smi: {f['smi_samples']} samples, utilisation mean "
                f"{show_none(f['smi_utilisation_mean'])} %, max {show_none(f['smi_utilisation_max'])} %")
    if name == "end_to_end":
        return ", ".join(f"{k} {v:.1f} s" for k, v in f["phases_s"].items())
    if name == "data":
        return f"{f['events']:,} events; generated in {f['generate_s']:.1f} s, loaded in {f['load_s']:.1f} s"
    return str(f.get("summary", ""))


def show_none(value) -> str:
    return "—" if value is None else f"{value:g}"


PHASES = {"data": data, "tests": gpu_tests, "training": training, "embedding": embedding, "equality": equality,
          "kmeans": kmeans, "lookalike": lookalike, "end_to_end": end_to_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS), help="directory for gpu.md and gpu.json")
    parser.add_argument("--budget-s", type=float, default=420, help="seconds for all phases together")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds on a CPU (the CI test)")
    parser.add_argument("--customers", type=int, default=None, help="generated customers (default 1M)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch, faiss and OpenMP threads, here and in the subprocesses (--smoke: 1)")
    parser.add_argument("--profile", action="store_true", help="cProfiles of Trainer.fit and pipeline.embed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (bundles, logs)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. loader.predict_batch_size=8192")
    b = Bench(parser.parse_intermixed_args())
    print(f"device {b.device}; sizes {b.size}; overrides {b.overrides}; work {b.work}", flush=True)
    b.state["tests"] = start_gpu_tests(b.work)
    # the imports the phases share, outside any deadline: an import cut short leaves its module half-made
    import faiss_bench  # noqa: F401
    import throughput  # noqa: F401

    from engine import pipeline  # noqa: F401
    for name, measure in PHASES.items():
        b.phase(name, measure)
    if b.state["tests"] and b.state["tests"][1].poll() is None:  # its phase was skipped
        b.state["tests"][1].kill()
    print("\n" + markdown(b.result))
    print(f"wrote {Path(b.args.out) / 'gpu.md'} and gpu.json")
    if not b.args.keep:
        shutil.rmtree(b.work, ignore_errors=True)


if __name__ == "__main__":
    main()
