"""A loaded bundle (docs/bundle.md): manifest, centroids, model and the customers, with durable erasure.

    bundle = Bundle.load("outputs/bundle")
    c = bundle.customers                 # one consistent version of every per-customer structure
    row = c.row["C000042"]; c.embeddings[row], c.segments.slice(row, 1)
    bundle.erase("C000042")              # GDPR: gone from every file and answer, for good

Erasure appends the id to tombstones.jsonl and fsyncs it before anything else changes, then rewrites the
customer files (see customers.py for the row numbering and crash recovery) and swaps ``bundle.customers``
in one assignment. Every load applies the tombstones again, so an erased customer re-ingested by a later
training run on an old log is dropped as that bundle loads (train.py copies tombstones.jsonl forward).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
import torch

from engine.bundle.customers import (
    EMBEDDINGS,
    FORECAST,
    HIERARCHY,
    INDEX,
    PROFILES,
    RECOMMENDATIONS,
    SEGMENTS,
    STORE,
    Customers,
    load_customers,
    read_file,
    replace_file,
    write_files,
)
from engine.bundle.ledger import append_erasure, read_erasures
from engine.bundle.writer import BUNDLE_FORMAT, BundleError, present_ids, recover_swap
from engine.model.io import MODEL_FILE, load_model
from engine.segment.hierarchy import Hierarchy

if TYPE_CHECKING:
    from engine.index.signature import Weights

log = logging.getLogger(__name__)

MANIFEST, CENTROIDS, TOMBSTONES = "manifest.json", "centroids.npy", "tombstones.jsonl"
DEFAULT_PREDICT_MAX_LEN = 256


class UnknownCustomer(KeyError):
    """A customer id the bundle does not hold (never seen, or erased)."""

    def __init__(self, customer_id: str):
        super().__init__(customer_id)
        self.customer_id = customer_id

    def __str__(self) -> str:
        return f"customer {self.customer_id!r} is not in this bundle (unknown or erased)"


class StorageError(BundleError):
    """An erasure applied in memory that could not be written (disk full, read-only): pending on disk."""


class BundleReplaced(BundleError):
    """The bundle's directory was replaced (by a newer bundle) since it was loaded."""


def read_tombstones(directory: Path) -> list[str]:
    """Erased customer ids of the bundle's tombstones.jsonl, in erasure order (a torn last line is skipped:
    its erase never returned)."""
    return read_erasures(directory / TOMBSTONES)


def append_tombstone(directory: Path, customer_id: str) -> None:
    """Append {"customer_id", "erased_at"} to tombstones.jsonl and fsync it (and the directory if new)."""
    append_erasure(directory / TOMBSTONES, customer_id)


def lookalike_weights(path: Path, manifest: dict) -> Weights:
    """The manifest's "lookalike" weights (engine.index.tuning), UNTUNED for a bundle written before the tuning;
    BundleError naming the bundle and the entry if they are not this engine's."""
    from engine.index.signature import UNTUNED, Weights

    entry = manifest.get("lookalike") or {}
    if "weights" not in entry:
        return UNTUNED
    try:
        return Weights.from_dict(entry["weights"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{path}: {MANIFEST} lookalike.weights: {err} (written by another engine version? "
                          "retrain, or rerun stage=embed)") from None


def check_manifest(path: Path, manifest) -> None:
    """BundleError unless manifest.json is a bundle manifest of the format this engine reads: checked before
    any other file of the directory is opened."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "format" not in manifest:
        raise BundleError(f"{path}: {MANIFEST} is not a bundle manifest (no format or files): not a bundle that "
                          "train.py wrote")
    if manifest["format"] != BUNDLE_FORMAT:
        raise BundleError(f"{path}: {MANIFEST} has bundle format {manifest['format']!r}; this engine reads format "
                          f"{BUNDLE_FORMAT} (rebuild the bundle with this engine's train.py)")


def _tombstone_present(path: Path, ids: set[str]) -> list[str]:
    """Append a tombstone for each of ``ids`` the bundle still holds (its segments.parquet lists every
    customer) before any file changes; returns them."""
    present = read_file(path, SEGMENTS, lambda p: present_ids(path, ids))
    try:
        for customer_id in present:
            append_tombstone(path, customer_id)
    except OSError as err:  # disk full: they are still left out of this load; the ledger keeps them
        log.error("%s: could not tombstone %d erased customer(s) (%s): left out in memory only", path,
                  len(present), err)
    if present:
        log.info("%s: %d customer(s) of the erasure ledger are still here: erasing them", path, len(present))
    return present


def _identity(path: Path) -> tuple[int, int]:
    """(device, inode) of a directory: a bundle rewritten by train.py (renamed into place) has a new one."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


class Bundle:
    """One bundle directory loaded for serving. Immutable except ``customers``, which erase() replaces."""

    def __init__(self, path: Path, manifest: dict, centroids: np.ndarray, customers: Customers, device: str):
        self.path, self.manifest, self.centroids, self.device = path, manifest, centroids, device
        # the signature lookalike's tuned weights, read once: a bad entry fails the load (409), not every query
        self.lookalike_weights = lookalike_weights(path, manifest)
        self.customers = customers
        self._identity = _identity(path)
        self._model = None
        self._model_lock = threading.Lock()
        self._erase_lock = threading.Lock()
        self.derived: dict = {}  # objects built from this bundle for serving (the scorer): freed with it

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", eager_model: bool = False,
             erased: list[str] | None = None) -> Bundle:
        """Read a bundle; finishes any erasure a crash interrupted, and applies ``erased`` (the erasure
        ledger's ids): those still in the bundle are tombstoned in it and dropped from its files. BundleError
        names the directory and file."""
        path = Path(path).resolve()
        recover_swap(path)
        if not path.is_dir():
            raise BundleError(f"{path}: no such bundle directory")
        manifest = read_file(path, MANIFEST, lambda p: json.loads(p.read_text()))
        check_manifest(path, manifest)
        centroids = read_file(path, CENTROIDS, np.load).astype(np.float32)
        hierarchy = read_file(path, HIERARCHY, lambda p: Hierarchy.from_dict(json.loads(p.read_text())))
        profiles = read_file(path, PROFILES, pq.read_table)
        if not (path / MODEL_FILE).exists():
            raise BundleError(
                f"{path}: missing {MODEL_FILE} (not a complete bundle; rebuild it with train.py)"
            )
        tombstones = read_tombstones(path)
        if erased:
            tombstones += _tombstone_present(path, set(erased) - set(tombstones))
        customers, rewritten = load_customers(path, profiles, hierarchy, tombstones)
        if (
            centroids.ndim != 2
            or len(centroids) != hierarchy.k
            or centroids.shape[1] != customers.embeddings.shape[1]
        ):
            raise BundleError(
                f"{path}: {CENTROIDS} has shape {centroids.shape}, expected [{hierarchy.k}, "
                f"{customers.embeddings.shape[1]}] (hierarchy k, embedding dim)"
            )
        bundle = cls(path, manifest, np.ascontiguousarray(centroids), customers, device)
        if rewritten:
            log.warning(
                "%s: finished an interrupted erasure (rewrote %s)", path, ", ".join(sorted(rewritten))
            )
            try:
                bundle._write_manifest()
            except OSError as err:
                log.error("%s: could not rewrite manifest.json (%s); the erasure stays pending", path, err)
        if eager_model:
            bundle.model  # noqa: B018  load now, not on the first request
        log.info("loaded bundle %s: %d customers, %d segments", path, customers.n, bundle.k)
        return bundle

    # -- what the bundle says about itself -----------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def has_forecast(self) -> bool:
        return self.customers.forecast is not None

    @property
    def forecast_meta(self) -> dict:
        """What answers any horizon from forecast.parquet's parameters: the manifest's "forecast" entry
        (decay_per_day, horizon_days, discount_rate, unit; see engine.forecast.process)."""
        meta = self.manifest.get("forecast")
        if not meta:
            raise BundleError(f"{self.path}: the bundle has no forecast parameters (written by an older engine "
                              "or trained with forecast.weight=0); retrain it to get forecasts")
        return meta

    @property
    def as_of(self) -> int:
        """Epoch seconds of the data's end (or cutoff): what the batch forecast is as of."""
        as_of = self.manifest.get("as_of")
        return int(as_of) if as_of is not None else self.customers.store.time_range()[1] + 1

    @property
    def predict_max_len(self) -> int:
        """The last N events of a customer are embedded (manifest config loader.predict_max_len)."""
        loader = (self.manifest.get("config") or {}).get("loader") or {}
        return int(loader.get("predict_max_len") or DEFAULT_PREDICT_MAX_LEN)

    @property
    def model(self):
        """The encoder (eval mode, on ``device``), loaded on first use."""
        with self._model_lock:
            if self._model is None:
                model, payload = read_file(self.path, MODEL_FILE, lambda p: load_model(p, map_location="cpu"))
                self._model = (model.to(torch.device(self.device)).eval(), payload)
        return self._model[0]

    @property
    def representation(self):
        """The fitted hybrid vector (engine.represent) of bundles that have one, else None; read on first use."""
        with self._model_lock:
            if not hasattr(self, "_representation"):
                from engine.represent import FILE, Representation

                path = self.path / FILE
                self._representation = read_file(self.path, FILE, Representation.load) if path.exists() else None
        return self._representation

    @property
    def recommender(self):
        """The recommender (engine.recommend) of bundles that have one, else None; read on first use."""
        with self._model_lock:
            if not hasattr(self, "_recommender"):
                from engine.recommend.recommender import DIRECTORY, Recommender

                path = self.path / DIRECTORY
                self._recommender = (read_file(self.path, DIRECTORY, Recommender.load)
                                     if (path / "recommender.json").exists() else None)
        return self._recommender

    @property
    def vocabs(self) -> dict[str, list[str]]:
        return self.customers.store.vocabs

    # -- erasure ---------------------------------------------------------------------------------------------
    def erase(self, customer_id: str) -> None:
        """Remove a customer from every file and answer, durably. UnknownCustomer if not held."""
        with self._erase_lock:
            current = self.customers
            row = current.row.get(customer_id)
            if row is None:
                raise UnknownCustomer(customer_id)
            if _identity(self.path) != self._identity:
                raise BundleReplaced(
                    f"{self.path}: the directory was replaced (a new bundle?) since it was loaded; "
                    "reload it and erase again"
                )
            remaining = current.without(np.array([row]))
            self.customers = remaining  # in memory first: never answered again, whatever the disk does
            try:
                append_tombstone(self.path, customer_id)
                names = {INDEX, EMBEDDINGS, SEGMENTS, FORECAST, STORE, PROFILES, RECOMMENDATIONS}
                self.customers = write_files(self.path, remaining, names)
                self._write_manifest()
            except OSError as err:
                raise StorageError(
                    f"{self.path}: customer {customer_id!r} is erased from the answers, but the bundle's files "
                    f"could not be rewritten ({err.strerror or err}): the erasure is pending, and is finished "
                    "when the bundle next loads (free space, then POST /reload)"
                ) from err
        log.info("%s: erased one customer (%d remain)", self.path, self.customers.n)

    def _write_manifest(self) -> None:
        """Counts and file rows as the customers now are (the manifest is written last)."""
        c = self.customers
        manifest = dict(self.manifest)
        manifest["counts"] = {**manifest.get("counts", {}), "customers": c.n, "events": c.store.n_events}
        files = dict(manifest.get("files", {}))
        for name in (EMBEDDINGS, SEGMENTS, FORECAST):
            if name in files:
                files[name] = {**files[name], "rows": c.n}
        if RECOMMENDATIONS in files and c.recommendations is not None:
            files[RECOMMENDATIONS] = {**files[RECOMMENDATIONS], "rows": c.recommendations.num_rows}
        manifest["files"] = files
        replace_file(
            self.path / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1, default=str))
        )
        self.manifest = manifest


__all__ = ["Bundle", "BundleError", "BundleReplaced", "StorageError", "UnknownCustomer", "append_tombstone", "read_tombstones"]
