"""Training and batch-embedding throughput of the pipeline against the bare compute, and peak memory.

    python bench/throughput.py [--customers 100000] [--steps 50] [--quick] [--keep DIR] [--profile] [KEY=VALUE ...]

On a generated base (mean ~64 events per customer) with the default config composed from conf/ (GRU,
model.dim=128; trailing KEY=VALUE are Hydra overrides, e.g. ``trainer=gpu`` or ``forecast.weight=0``):

- training: Lightning ``Trainer.fit`` for ``--steps`` CoLES steps (default objective, then CoLES alone), timed per step after a warm-up, against the
  bare loop: a copy of the model (same initial weights) doing forward + backward + optimizer step with its
  own training_step (logging off) on the very batches Lightning consumed, right after each Lightning step
  (pre-collated, so data loading is excluded). Events are the valid events of the CoLES views.
- embedding: ``pipeline.embed`` (Lightning predict + EmbeddingWriter + merge) over every customer against the
  bare forward (the module's predict_step under inference_mode) over the batches of the same
  predict_dataloader (its order and length bucketing included), loaded and not timed.
- memory: peak RSS of a separate subprocess that loads the log, trains and embeds with the pipeline alone.

Targets (issue): pipeline / bare >= 0.8 for both; peak < 1 GB for 100k customers. The measured parts run in
fresh subprocesses. Prints figures and writes bench/results/throughput.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import json
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
RESULTS = ROOT / "bench" / "results" / "throughput.json"
MEAN_EVENTS = 64.0
COLES_ONLY = ("forecast.weight=0", "model.item_weight=0")  # what the peer trains


def rss_mb() -> float:
    """Peak resident set of this process so far, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(n_customers: int, keep: str | None) -> Path:
    """The cached events.parquet of ``n_customers`` generated customers, written when absent."""
    from engine.data.synthetic import SyntheticConfig, write

    out_dir = Path(
        keep or Path(tempfile.gettempdir()) / f"segment-engine-bench/throughput-{n_customers}x{MEAN_EVENTS:g}"
    )
    path = out_dir / "events.parquet"
    if not path.exists():
        print(
            f"generating {n_customers} customers x {MEAN_EVENTS:g} events into {out_dir} ...", file=sys.stderr
        )
        write(SyntheticConfig(n_customers=n_customers, mean_events=MEAN_EVENTS, seed=0), out_dir)
    return path


def compose(path: str, work: str, steps: int, overrides: list[str]):
    """The default config (conf/) with the benchmark's data path, step limit and quiet trainer."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import engine.config  # noqa: F401  registers the schema

    fixed = [
        f"data.path={path}",
        f"out_dir={work}/bundle",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=fixed + overrides)
    engine.config.validate(cfg)
    return cfg


def _callback_class():
    import pytorch_lightning as pl
    import torch

    class StepClock(pl.Callback):
        """Times every Lightning training step and, right after it, the bare step on the same batch.

        Interleaving the two keeps their ratio fair on a machine shared with other work. A step's pipeline
        time runs from the end of the previous step's twin to the end of this step (so it includes fetching
        and collating the batch); the twin's time is kept apart."""

        def __init__(self, twin, device_sync):
            self.twin, self.sync = twin, device_sync
            self.pipeline, self.bare, self.batches = [], [], []
            self.resumed = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.resumed is None:
                self.resumed = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.sync()
            end = time.perf_counter()
            self.pipeline.append(end - self.resumed)
            views = batch["views"]
            self.batches.append(
                (batch["rows"].cpu().numpy(), int(views["lengths"].sum()), views["cat"].shape[:2].numel())
            )
            with torch.enable_grad():
                self.twin(batch)
            self.sync()
            self.resumed = time.perf_counter()
            self.bare.append(self.resumed - end)

    return StepClock


@contextlib.contextmanager
def _profiled(enabled: bool, title: str):
    """cProfile the block and print its top functions to stderr when ``enabled``."""
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        print(f"== cProfile of {title} ==", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(35)


def _sync(device):
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _autocast(cfg, device):
    """The trainer's mixed precision as an autocast context for the bare loops."""
    import torch

    if str(cfg.trainer.precision).startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if str(cfg.trainer.precision).startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _to(batch, device):
    return {k: _to(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


def bare_step(cfg, model, device):
    """A function batch -> None: one forward + backward + AdamW step of ``model`` with its own optimizer.

    The loss is the module's own ``training_step`` (every objective it trains), with ``self.log`` made a
    no-op: logging is part of what Lightning adds, not of the compute."""
    import torch

    model.to(device).train()
    model.log = lambda *args, **kwargs: None
    optimizer = model.configure_optimizers()
    while not isinstance(optimizer, torch.optim.Optimizer):  # Lightning also accepts a dict or a list
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer[0]

    def step(batch) -> None:
        batch = _to(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(cfg, device):
            loss = model.training_step(batch, 0)
        loss.backward()
        optimizer.step()

    return step


def bare_embedding(cfg, model, dm, device) -> tuple[float, float, float]:
    """(forward seconds, loading seconds, padded fraction) over the batches of ``dm.predict_dataloader()``,
    the very batches (order and bucketing included) that ``pipeline.embed`` predicts on; only the forward
    is timed as compute."""
    import torch

    model.to(device).eval()
    sync = _sync(device)
    forward = loading = 0.0
    valid = padded = 0
    with torch.inference_mode(), _autocast(cfg, device):
        batches = iter(dm.predict_dataloader())
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            batch = _to(batch, device)
            sync()
            t1 = time.perf_counter()
            model.predict_step(batch, 0)
            sync()
            forward += time.perf_counter() - t1
            loading += t1 - t0
            valid += int(batch["lengths"].sum())
            padded += batch["cat"].shape[0] * batch["cat"].shape[1]
    return forward, loading, 1 - valid / padded


def measure_training(cfg, data, warmup: int, profile: bool):
    """Lightning fit with the bare twin step after each step; (figures, trained model, datamodule)."""
    import numpy as np
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from engine import pipeline
    from engine.model.features import CATEGORICAL_FIELDS

    pl.seed_everything(cfg.seed, workers=True)
    dm = pipeline.datamodule(cfg, data)
    vocab_sizes = [len(data.store.vocabs[f]) for f in CATEGORICAL_FIELDS]
    model = instantiate(cfg.model, vocab_sizes=vocab_sizes, spend_scale=dm.spend_scale, _convert_="all")
    run = pipeline.trainer(cfg, logger=False, enable_checkpointing=False, callbacks=[])
    device = run.strategy.root_device
    clock = _callback_class()(bare_step(cfg, copy.deepcopy(model), device), _sync(device))
    run.callbacks.append(clock)
    start = time.perf_counter()
    with _profiled(profile, "Trainer.fit (bare twin steps included)"):
        run.fit(model, datamodule=dm)
    fit_wall = time.perf_counter() - start
    warmup = max(1, min(warmup, len(clock.batches) - 1))
    rows, events, slots = zip(*clock.batches[warmup:], strict=True)
    collate = 0.0
    for r in rows:
        t0 = time.perf_counter()
        dm.train_collate(r)
        collate += time.perf_counter() - t0
    pipe, bare = sum(clock.pipeline[warmup:]), sum(clock.bare[warmup:])
    customers, events = sum(len(r) for r in rows), sum(events)
    return (
        {
            "steps": len(rows),
            "warmup_steps": warmup,
            "batch_customers": customers // len(rows),
            "train_events": events,
            "train_pipeline_s": round(pipe, 3),
            "train_bare_s": round(bare, 3),
            "train_collate_s": round(collate, 3),
            "train_fit_wall_s": round(fit_wall - sum(clock.bare), 3),
            "train_events_per_s": round(events / pipe),
            "train_bare_events_per_s": round(events / bare),
            "train_customers_per_s": round(customers / pipe, 1),
            "train_bare_customers_per_s": round(customers / bare, 1),
            "train_ratio": round(bare / pipe, 3),
            "train_padding": round(1 - events / sum(slots), 3),
            "train_step_ms_p50": round(1e3 * float(np.median(clock.pipeline[warmup:])), 1),
            "train_bare_step_ms_p50": round(1e3 * float(np.median(clock.bare[warmup:])), 1),
        },
        model,
        dm,
    )


def measure_embedding(cfg, data, model, spend_scale: float, profile: bool) -> dict:
    """pipeline.embed between two bare passes over the same predict batches (their mean is the reference)."""
    from engine import pipeline

    device = next(model.parameters()).device
    t0 = time.perf_counter()
    dm = pipeline.datamodule(cfg, data, spend_scale)
    setup = time.perf_counter() - t0
    before = bare_embedding(cfg, model, dm, device)
    model.cpu()
    t0 = time.perf_counter()
    with _profiled(profile, "pipeline.embed"):
        arrays = pipeline.embed(cfg, model, data, spend_scale)
    wall = time.perf_counter() - t0
    after = bare_embedding(cfg, model, dm, device)
    forward = (before[0] + after[0]) / 2
    n = data.store.n_customers
    return {
        "embed_wall_s": round(wall, 3),
        "embed_bare_forward_s": round(forward, 3),
        "embed_bare_forward_runs_s": [round(before[0], 3), round(after[0], 3)],
        "embed_collate_s": round(before[1], 3),
        "embed_datamodule_s": round(setup, 3),
        "embed_customers_per_s": round(n / wall, 1),
        "embed_bare_customers_per_s": round(n / forward, 1),
        "embed_ratio": round(forward / wall, 3),
        "embed_padding": round(before[2], 3),
        "embed_complete": arrays is not None and len(arrays["embedding"]) == n,
    }


def measure_speed(path: str, steps: int, warmup: int, overrides: list[str], profile: bool) -> dict:
    """Pipeline against bare loops for training and embedding, in this process."""
    import torch

    from engine import pipeline
    from engine.data.memory import keep_freed_memory

    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as work:
        cfg = compose(path, work, steps, overrides)
        data = pipeline.load_data(cfg)
        # The model's setup does this for Lightning; done here first so the bare loops share the allocator settings.
        keep_freed_memory()
        training, model, dm = measure_training(cfg, data, warmup, profile)
        embedding = measure_embedding(cfg, data, model, dm.spend_scale, profile)
        # The peer's objective alone (CoLES, no item or forecast loss), same encoder: the like-for-like figure.
        coles_cfg = compose(path, work, steps, overrides + list(COLES_ONLY))
        coles, _, _ = measure_training(coles_cfg, data, warmup, False)
    return {
        "customers": data.store.n_customers,
        "events": data.store.n_events,
        "device": str(next(model.parameters()).device),
        "precision": str(cfg.trainer.precision),
        "forecast_weight": float(cfg.forecast.weight),
        "overrides": overrides,
        "threads": torch.get_num_threads(),
        **training,
        **embedding,
        "coles_only_overrides": list(COLES_ONLY),
        **{f"coles_only_{k}": v for k, v in coles.items() if k.startswith("train_")},
        "speed_process_peak_rss_mb": round(rss_mb(), 1),
    }


def measure_memory(path: str, steps: int, overrides: list[str]) -> dict:
    """Peak RSS of loading the log, training ``steps`` steps and embedding every customer with the pipeline."""
    from engine import pipeline

    with tempfile.TemporaryDirectory(prefix="throughput-memory-") as work:
        cfg = compose(
            path,
            work,
            steps,
            overrides
            + [
                "trainer.logger=false",
                "trainer.callbacks=[]",
                "+trainer.enable_checkpointing=false",
                "restore_best=false",
            ],
        )
        rss_start = rss_mb()
        t0 = time.perf_counter()
        data = pipeline.load_data(cfg)
        rss_loaded = rss_mb()
        t1 = time.perf_counter()
        model, dm, _ = pipeline.fit(cfg, data)
        rss_fit = rss_mb()
        t2 = time.perf_counter()
        pipeline.embed(cfg, model, data, dm.spend_scale, dm)  # as run_all does
        t3 = time.perf_counter()
    return {
        "customers": data.store.n_customers,
        "rss_after_imports_mb": round(rss_start, 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "rss_after_fit_mb": round(rss_fit, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "load_s": round(t1 - t0, 2),
        "fit_s": round(t2 - t1, 2),
        "embed_s": round(t3 - t2, 2),
    }


def _run(command: list[str]) -> str:
    """The last line a subprocess printed; its other output passes through."""
    lines = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
    print("\n".join(lines[:-1]), end="\n" if len(lines) > 1 else "", flush=True)
    return lines[-1]


def table(result: dict) -> str:
    s, m = result["speed"], result["memory"]
    rows = [
        (
            "base",
            f"{s['customers']:,} customers, {s['events']:,} events; device {s['device']}, "
            f"{s['threads']} threads, forecast.weight={s['forecast_weight']:g}",
        ),
        (
            "training steps measured",
            f"{s['steps']} (after {s['warmup_steps']} warm-up), "
            f"{s['batch_customers']} customers x views per step",
        ),
        (
            "training events/s",
            f"{s['train_events_per_s']:,} pipeline vs {s['train_bare_events_per_s']:,} bare "
            f"= {s['train_ratio']:.2f}  (target >= 0.8)",
        ),
        (
            "training customers/s",
            f"{s['train_customers_per_s']:,.0f} pipeline vs {s['train_bare_customers_per_s']:,.0f} bare",
        ),
        (
            "training customers/s, CoLES objective only",
            f"{s['coles_only_train_customers_per_s']:,.0f} pipeline vs "
            f"{s['coles_only_train_bare_customers_per_s']:,.0f} bare ({' '.join(s['coles_only_overrides'])})",
        ),
        (
            "  per step: pipeline / bare / collate",
            f"{1e3 * s['train_pipeline_s'] / s['steps']:.1f} / "
            f"{1e3 * s['train_bare_s'] / s['steps']:.1f} / {1e3 * s['train_collate_s'] / s['steps']:.1f} ms; "
            f"padding {s['train_padding']:.0%} of view slots",
        ),
        (
            "embedding customers/s",
            f"{s['embed_customers_per_s']:,.0f} pipeline vs "
            f"{s['embed_bare_customers_per_s']:,.0f} bare = {s['embed_ratio']:.2f}  (target >= 0.8)",
        ),
        (
            "  pipeline.embed s: wall / datamodule / collate / forward",
            f"{s['embed_wall_s']:.2f} / "
            f"{s['embed_datamodule_s']:.2f} / {s['embed_collate_s']:.2f} / {s['embed_bare_forward_s']:.2f}; "
            f"padding {s['embed_padding']:.0%} of predict slots",
        ),
        (
            "peak RSS MB (load + fit + embed)",
            f"{m['peak_rss_mb']:.0f}  (after imports {m['rss_after_imports_mb']:.0f}, "
            f"load {m['rss_after_load_mb']:.0f}, fit {m['rss_after_fit_mb']:.0f}; "
            "target < 1000 at 100k customers, peer 2600)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers", type=int, default=None, help="generated customers (default 100k; --quick 10k)"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 50; --quick 20)")
    parser.add_argument("--warmup", type=int, default=5, help="training steps left out of the timing")
    parser.add_argument("--quick", action="store_true", help="small sizes: 10k customers, 20 steps")
    parser.add_argument("--keep", default=None, help="directory for the generated log (default: under /tmp)")
    parser.add_argument(
        "--log", default=None, help="an existing events file to use instead of generating one"
    )
    parser.add_argument("--profile", action="store_true", help="print cProfiles of fit and embed to stderr")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads in the measured processes (default: torch's own choice, one per core)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="where to write the JSON figures")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer=gpu forecast.weight=0")
    parser.add_argument("--measure", choices=("speed", "memory"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args()
    customers = args.customers or (10_000 if args.quick else 100_000)
    steps = args.steps or (20 if args.quick else 50)
    if args.measure and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.measure == "speed":
        print(json.dumps(measure_speed(args.log, steps, args.warmup, args.overrides, args.profile)))
        return
    if args.measure == "memory":
        print(json.dumps(measure_memory(args.log, steps, args.overrides)))
        return
    if args.generate:
        print(generate(customers, args.keep))
        return

    # Each part in its own subprocess: Linux keeps a process's peak RSS across fork and exec.
    path = args.log or _run(
        [sys.executable, __file__, "--generate", "--customers", str(customers)]
        + (["--keep", args.keep] if args.keep else [])
    )
    common = ["--log", str(path), "--steps", str(steps), "--warmup", str(args.warmup), *args.overrides]
    common += ["--threads", str(args.threads)] if args.threads else []
    speed = json.loads(
        _run(
            [sys.executable, __file__, "--measure", "speed", *common]
            + (["--profile"] if args.profile else [])
        )
    )
    memory = json.loads(_run([sys.executable, __file__, "--measure", "memory", *common]))
    result = {"log": str(path), "cpus": os.cpu_count(), "speed": speed, "memory": memory}
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
