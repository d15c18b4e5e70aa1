"""Training on every CPU core through Lightning's DDP (one process per core, one thread each) against one
process using all the cores, with the same customers per optimizer step.

    python bench/cpu_processes.py --log EVENTS.parquet [--processes 2] [--steps 10 60] [KEY=VALUE ...]

Each configuration runs ``train.py stage=fit`` twice, for a short and a long number of steps, and the
per-step time is the difference of the two wall times over the difference of steps, so start-up, the
validation pass and the checkpoint cancel out. One process trains ``loader.batch_size`` customers per step;
the DDP run gives each of its processes ``batch_size / processes``. Both objectives are measured: the
default one and the CoLES objective alone (what the peer trains). Prints a JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLES_ONLY = ["forecast.weight=0", "model.item_weight=0"]


def fit_seconds(log: str, steps: int, overrides: list[str], env: dict) -> float:
    """Wall seconds of ``train.py stage=fit`` limited to ``steps`` training steps."""
    with tempfile.TemporaryDirectory(prefix="cpu-processes-") as work:
        command = [sys.executable, str(ROOT / "train.py"), "stage=fit", f"data.path={log}",
                   f"out_dir={work}/bundle", "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
                   "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", *overrides]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def customers_per_s(log: str, steps: tuple[int, int], batch: int, overrides: list[str], env: dict) -> dict:
    short, long = (fit_seconds(log, n, overrides, env) for n in steps)
    per_step = (long - short) / (steps[1] - steps[0])
    return {"step_ms": round(1e3 * per_step, 1), "customers_per_s": round(batch / per_step, 1),
            "wall_s": [round(short, 2), round(long, 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="events file (e.g. the one bench/throughput.py generates)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=64, help="customers per optimizer step, all processes")
    parser.add_argument("--steps", type=int, nargs=2, default=(10, 60), help="short and long runs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_intermixed_args()
    n, batch = args.processes, args.batch
    one = ["trainer=cpu", f"loader.batch_size={batch}"]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={n}", "trainer.precision=32-true",
           f"loader.batch_size={batch // n}"]
    # one thread per DDP process (the cores are shared out); the single process keeps torch's default
    env_ddp = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = {"processes": n, "batch_customers": batch, "steps": list(args.steps), "overrides": args.overrides}
    for name, objective in (("default", []), ("coles_only", COLES_ONLY)):
        extra = args.overrides + objective
        result[f"{name}_one_process"] = customers_per_s(args.log, args.steps, batch, one + extra, dict(os.environ))
        result[f"{name}_ddp"] = customers_per_s(args.log, args.steps, batch, ddp + extra, env_ddp)
        print(f"{name}: one process {result[f'{name}_one_process']['customers_per_s']:,.0f} customers/s, "
              f"{n} DDP processes {result[f'{name}_ddp']['customers_per_s']:,.0f}", file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
