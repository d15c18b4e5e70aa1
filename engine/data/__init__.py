"""Event log -> validated events -> packed per-customer sequence store (+ synthetic generator)."""

from __future__ import annotations

from engine.data.events import Columns, EventLogError, EventLogSpec, IngestReport, read_events
from engine.data.vocab import UNKNOWN

__all__ = ["Columns", "EventLogError", "EventLogSpec", "IngestReport", "SequenceStore", "UNKNOWN",
           "build_store", "read_events", "load_store"]


def __getattr__(name: str):
    """The store's names, imported on first use: the store imports torch (its sort), and the config, the
    reader and ``--help`` must not wait for it."""
    if name in ("SequenceStore", "build_store", "pack"):
        from engine.data import store

        return getattr(store, name)
    raise AttributeError(f"module 'engine.data' has no attribute {name!r}")


def load_store(spec: EventLogSpec, min_count: int = 1, vocabs: dict | None = None):
    """(SequenceStore, IngestReport): the log named by ``spec``, read, validated and packed; the report counts
    what was dropped, and report.quality.to_dict() is the data-quality report (data_quality.json)."""
    from engine.data.store import pack

    events, report = read_events(spec)
    columns = dict(zip(events.column_names, events.columns, strict=True))
    del events  # pack frees each column once packed
    store, report.duplicates_removed = pack(columns, spec.purchase_types, spec.return_types, dedupe=spec.dedupe,
                                            min_count=min_count, vocabs=vocabs, quality=report.quality)
    report.quality.packed(store)
    return store, report
