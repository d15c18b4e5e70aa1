"""Event log -> validated events -> packed per-customer sequence store (+ synthetic generator)."""

from engine.data.events import Columns, EventLogError, EventLogSpec, IngestReport, read_events
from engine.data.store import SequenceStore, build_store, pack
from engine.data.vocab import UNKNOWN

__all__ = ["Columns", "EventLogError", "EventLogSpec", "IngestReport", "SequenceStore", "UNKNOWN",
           "build_store", "read_events", "load_store"]


def load_store(spec: EventLogSpec, min_count: int = 1, vocabs: dict | None = None) -> tuple[SequenceStore, IngestReport]:
    """Read and validate the log named by ``spec`` and pack it into a store; the report counts what was dropped."""
    events, report = read_events(spec)
    columns = dict(zip(events.column_names, events.columns, strict=True))
    del events  # pack frees each column once packed
    store, report.duplicates_removed = pack(
        columns, spec.purchase_types, spec.return_types, dedupe=spec.dedupe, min_count=min_count, vocabs=vocabs
    )
    return store, report
