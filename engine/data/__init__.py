"""Event log -> validated events -> packed per-customer sequence store (+ synthetic generator)."""

from engine.data.events import Columns, EventLogError, EventLogSpec, IngestReport, read_events
from engine.data.store import SequenceStore, build_store
from engine.data.vocab import UNKNOWN

__all__ = ["Columns", "EventLogError", "EventLogSpec", "IngestReport", "SequenceStore", "UNKNOWN",
           "build_store", "read_events", "load_store"]


def load_store(spec: EventLogSpec, min_count: int = 1, vocabs: dict | None = None) -> tuple[SequenceStore, IngestReport]:
    """Read and validate the log named by ``spec`` and pack it into a store; the report counts what was dropped."""
    events, report = read_events(spec)
    store, report.duplicates_removed = build_store(
        events, spec.purchase_types, spec.return_types, dedupe=spec.dedupe, min_count=min_count, vocabs=vocabs
    )
    return store, report
