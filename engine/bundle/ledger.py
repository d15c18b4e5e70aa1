"""The erasure ledger: one append-only file of erased customer ids that every run and every service honours.

A bundle's own tombstones.jsonl travels with that bundle; the ledger does not belong to any bundle directory,
so a retrain into a new ``out_dir`` (``out_dir=bundles/DATE``), a ``stage=embed`` or ``stage=segment`` into
another directory and a restart all see every erasure. By default it is ``erasures.jsonl`` beside the
bundles (in the parent directory of ``out_dir``, or of the served bundle): ``outputs/erasures.jsonl`` for
``outputs/bundle``; ``privacy.ledger`` (train.py) and ``ledger`` (serve.py) move it.

    ledger = Ledger.beside(out_dir)
    ledger.append("C000042")            # fsynced before it returns, under the ledger's lock
    with ledger.locked():                # held while a new bundle takes the latest erasures and is swapped in
        erased = ledger.read()

train.py reads it at the start of every stage (the erased never reach ingest) and again, under the lock,
just before the new bundle is published: an erasure answered while the run trained is applied to the new
bundle before the swap, and one that arrives during the swap waits for it and then finds the new bundle.
The service applies it on every load and reload, and appends to it before it answers a DELETE.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LEDGER = "erasures.jsonl"


def read_erasures(path: Path) -> list[str]:
    """Erased customer ids of a JSONL file of {"customer_id", ...} records, in order. A line that does not
    parse can only be the torn end of an append that crashed before it returned, so it is skipped with a
    warning."""
    if not path.exists():
        return []
    erased = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            erased.append(str(json.loads(line)["customer_id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d: not an erasure record, skipped (a torn append)", path, number)
    return erased


def append_erasure(path: Path, customer_id: str) -> None:
    """Append {"customer_id", "erased_at"} to ``path`` and fsync it (and its directory if the file is new)."""
    created = not path.exists()
    line = json.dumps({"customer_id": customer_id, "erased_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    with open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn line from a crash: end it so this record stands alone
                line = "\n" + line
        f.write((line + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    if created:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Ledger:
    """The ledger file at ``path`` and its lock (``path`` + ".lock", an advisory flock between processes)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def beside(cls, bundle_dir: str | os.PathLike, configured: str | os.PathLike | None = None) -> Ledger:
        """The configured ledger, or the default one in the parent directory of ``bundle_dir``."""
        return cls(configured if configured else Path(bundle_dir).resolve().parent / LEDGER)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's exclusive lock (appends from other processes wait)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> list[str]:
        return read_erasures(self.path)

    def append(self, customer_id: str, locked: bool = False) -> None:
        """Record an erasure durably; ``locked``: the caller holds the lock already."""
        if locked:
            append_erasure(self.path, customer_id)
            return
        with self.locked():
            append_erasure(self.path, customer_id)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"
