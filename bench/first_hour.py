"""A new user's first commands, timed: `train.py --help`, a mistyped key, a value of the wrong type, and the
main job on the embedded default log from nothing, with the time of each of its phases (read from the run's
log lines). Targets (issue: a new user's first hour): --help and config errors in about 2 s, the first
result under 2 minutes after set-up. Writes bench/results/first_hour.json and prints a table.

    python bench/first_hour.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "first_hour.json"

# (phase, the log line that starts it); each phase ends where the next one starts
PHASES = [
    ("generate the default log", r"generating the embedded default event log"),
    ("read and pack the log", r"read \d+ rows from"),
    ("train the encoder", r"Seed set to"),
    ("fit the forecast head", r"restoring the best checkpoint"),
    ("calibrate, embed, represent", r"forecast head fitted"),
    ("segment (k=auto) and hierarchy", r"spherical k-means"),
    ("fit the recommender", r"hierarchy: k="),
    ("write the bundle, report and recommendations", r"recommendations: [\d.]+ candidates per customer"),
]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def timed(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, done


def phases(log: str, start: datetime, end: datetime) -> dict[str, float]:
    """Seconds per phase: from the first line matching a phase's pattern to the next phase's first line."""
    firsts = []
    for name, pattern in PHASES:
        for line in log.splitlines():
            m = STAMP.match(line)
            if m and re.search(pattern, line):
                firsts.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), name))
                break
    firsts.sort()
    out = {"python start-up and imports": (firsts[0][0] - start).total_seconds() if firsts else 0.0}
    for (t, name), nxt in zip(firsts, [*firsts[1:], (end, None)], strict=True):
        out[name] = round((nxt[0] - t).total_seconds(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", help="directory for the run (default: a temporary one, removed)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="first-hour-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, argv, ok in (("--help", ["--help"], 0), ("a mistyped key (data.pth=x)", ["data.pth=x"], 1),
                           ("a wrong type (model.dim=abc)", ["model.dim=abc", "stage=fit", "data.path=none"], 1)):
        seconds, done = timed(argv, work)
        results[name] = {"seconds": round(seconds, 2), "exit": done.returncode,
                         "says": (done.stdout + done.stderr).strip().splitlines()[-1][:160] if done.returncode else ""}
        assert done.returncode == ok, (name, done.stderr[-500:])
    start = datetime.now()
    seconds, done = timed([f"out_dir={work / 'bundle'}", "trainer.enable_progress_bar=false"], work)
    end = datetime.now()
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    log = done.stdout + done.stderr
    results["the main job (train.py, embedded default, from nothing)"] = {
        "seconds": round(seconds, 1), "phases": phases(log, start, end),
        "report": str(work / "bundle" / "report.html")}
    print(f"\n{'command':58s} {'seconds':>8s}")
    for name, r in results.items():
        print(f"{name:58s} {r['seconds']:8.2f}  {r.get('says', '')}")
        for phase, s in r.get("phases", {}).items():
            print(f"    {phase:54s} {s:8.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpus": os.cpu_count(), "load_average": os.getloadavg(), "results": results},
                                  indent=1) + "\n")
    print(f"\nwrote {RESULTS}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
