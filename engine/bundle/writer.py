"""Write a bundle atomically: every file goes to a temporary sibling directory, which is renamed into place
only when complete, so a crash never leaves a half bundle where a good one was."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine import __version__

BUNDLE_FORMAT = 1
log = logging.getLogger(__name__)


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or inconsistent; the message names the directory and file."""


def embeddings_table(customer_ids: pa.Array, embeddings: np.ndarray) -> pa.Table:
    """customer_id string, embedding fixed_size_list<float32>[dim]."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    flat = pa.array(embeddings.reshape(-1), pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])
    return pa.table({"customer_id": pa.array(customer_ids, pa.string()), "embedding": column})


def read_embeddings(path: str | os.PathLike) -> tuple[pa.Array, np.ndarray]:
    """(customer_ids, float32 [n, dim]) from an embeddings.parquet."""
    table = pq.read_table(path)
    column = table["embedding"].combine_chunks()
    dim = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return table["customer_id"].combine_chunks(), values.reshape(-1, dim)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_swap(target: Path) -> bool:
    """A crash between the two renames of replace_dir leaves no ``target`` and the good copy moved aside:
    move it back. True when it did."""
    old = _aside(target)
    if target.exists() or not (old / "manifest.json").exists():
        return False
    os.replace(old, target)
    fsync_dir(target.parent)
    log.warning("%s: restored the bundle a crash left aside in %s (during a swap)", target, old.name)
    return True


def replace_dir(staged: Path, target: Path) -> None:
    """Swap ``staged`` into ``target``: the old directory is moved aside first and removed only after; a
    copy a crashed swap left aside is restored before anything is removed."""
    recover_swap(target)
    old = _aside(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


STALE_AFTER_S = 24 * 3600  # a staging directory without a live owner's pid is stale after this long


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove the staging directories of ``target`` whose writer is gone: named with a pid no process has
    (a run killed before its swap), or older than a day without one. Returns those removed."""
    removed = []
    for path in target.parent.glob(f".{target.name}.tmp-*"):
        owner = path.name[len(f".{target.name}.tmp-"):].split("-", 1)[0]
        try:
            stale = not _alive(int(owner)) if owner.isdigit() else time.time() - path.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        if stale and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d stale staging director%s of %s", len(removed), "y" if len(removed) == 1 else "ies",
                 target)
    return removed


class BundleWriter:
    """Stage the files of one bundle and commit them with a rename.

    with BundleWriter(out_dir) as staged: write files under staged.path; the bundle appears at out_dir
    only if the block finishes without an exception (then the manifest is written last). With a ``ledger``
    (engine.bundle.ledger), its latest erasures are applied to the staged files under its lock, and the
    lock is held until the bundle is in place: no erasure answered before the swap is missed."""

    def __init__(self, out_dir: str | os.PathLike, base: str | os.PathLike | None = None, ledger=None):
        self.ledger = ledger
        self.target = Path(out_dir).resolve()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        recover_swap(self.target)
        clean_stale(self.target)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-{os.getpid()}-", dir=self.target.parent))
        self.manifest: dict = {"format": BUNDLE_FORMAT, "engine_version": __version__, "files": {}}
        self.extra_tables: dict[str, str] = {}  # heading -> markdown table, shown in the report
        self.extra_html: dict[str, str] = {}  # heading -> trusted HTML (inline figures), shown in the report
        if base is not None:
            self._copy_from(Path(base))

    def _copy_from(self, base: Path) -> None:
        """Start from an existing bundle's files (the nightly embed keeps the model and vocabularies)."""
        for item in base.iterdir():
            if item.name in ("manifest.json",):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, self.path / item.name)
        manifest = base / "manifest.json"
        if manifest.exists():
            previous = json.loads(manifest.read_text())
            self.manifest.update({k: v for k, v in previous.items() if k not in ("created", "engine_version")})

    def write_table(self, name: str, table: pa.Table) -> Path:
        path = self.path / name
        pq.write_table(table, path)
        self.manifest["files"][name] = {"rows": table.num_rows}
        return path

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        self.manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.manifest["engine_version"] = __version__
        manifest = self.path / "manifest.json"
        with open(manifest, "w") as f:
            json.dump(self.manifest, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        if self.ledger is None:
            replace_dir(self.path, self.target)
            return
        try:
            with self.ledger.locked():
                apply_erasures(self.path, self.ledger.read())
                replace_dir(self.path, self.target)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise


def held_ids(path: Path) -> pa.Array | None:
    """The customer ids a staged or published bundle holds: segments.parquet's, or the store's (a fit-only
    bundle); None when it holds no customers."""
    if (path / "segments.parquet").exists():
        return pq.read_table(path / "segments.parquet", columns=["customer_id"])["customer_id"].combine_chunks()
    if (path / "store").exists():
        from engine.data.store import SequenceStore

        return SequenceStore.open(path / "store").customer_ids
    return None


def present_ids(path: Path, ids) -> list[str]:
    """The ones of ``ids`` a bundle directory still holds (see held_ids), sorted."""
    import pyarrow.compute as pc

    held = held_ids(path) if len(ids) else None
    if held is None:
        return []
    return sorted(set(pc.filter(held, pc.is_in(held, value_set=pa.array(sorted(ids), pa.string()))).to_pylist()))


def apply_erasures(path: Path, erased: list[str]) -> int:
    """Drop the ``erased`` customers a bundle directory still holds from every file of it (tombstoned in it
    first, as a served erasure does); returns how many were dropped."""
    from engine.bundle.ledger import append_erasure, read_erasures

    present = present_ids(path, erased)
    if not present:
        return 0
    if (path / "segments.parquet").exists():
        from engine.bundle.bundle import Bundle

        Bundle.load(path, erased=present)  # tombstones them, then rewrites each customer file without them
    else:
        from engine.data.store import SequenceStore

        known = set(read_erasures(path / "tombstones.jsonl"))
        for customer_id in present:
            if customer_id not in known:
                append_erasure(path / "tombstones.jsonl", customer_id)
        store = SequenceStore.open(path / "store")
        gone = store.customer_index(present)
        keep = np.setdiff1d(np.arange(store.n_customers), gone[gone >= 0])
        staged = path / ".store.erasing"
        shutil.rmtree(staged, ignore_errors=True)
        store.take(keep).save(staged)
        shutil.rmtree(path / "store")
        os.replace(staged, path / "store")
    log.info("%s: %d customer(s) erased while this bundle was built: dropped before it is published", path,
             len(present))
    return len(present)
