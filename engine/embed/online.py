"""Real-time scoring: one customer's new events -> their embedding, segment and forecast, with the bundle's
model and exactly the batch path's features (engine.model.features.gather, the predict collate's forecast
context, CustomerEncoder.predict_step), so scoring a stored history reproduces the stored embedding.

Events are validated by the event log's own rules (engine.data.events), so the errors read the same and name
the field and the event's position in the request ("row 2" is events[2]). A known customer's new events are
appended to their stored history before the last ``predict_max_len`` events are embedded; nothing is
written back to the bundle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from engine.data.events import CATEGORICAL, NUMERIC, EventLogError, _numeric, _parse_ts
from engine.data.store import FIELDS, SequenceStore
from engine.forecast.process import COLUMNS, Process, forecast_answer
from engine.model.datamodule import forecast_context
from engine.model.features import gather, last_events

if TYPE_CHECKING:
    from engine.bundle.bundle import Bundle

EVENT_FIELDS = ("ts", "event_type", "item_id", "category", "amount", "quantity", "channel")
SOURCE = "events"  # how errors name the request's events ("events: column 'ts' ... row 2")
N_NEAREST = 3


def _column(values: list, name: str) -> pa.ChunkedArray:
    try:
        return pa.chunked_array([pa.array(values)])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kinds = sorted({type(value).__name__ for value in values if value is not None})
        raise EventLogError(
            f"{SOURCE}: field '{name}' mixes types across events ({', '.join(kinds)}); send one "
            "type for every event, e.g. every ts as an ISO 8601 string"
        ) from None


def validate_events(events: list[dict], return_types: list[str] = ("return",)) -> dict[str, np.ndarray]:
    """The request's events in canonical form: ts int64 epoch s, categorical fields object [n] (str or None),
    amount / quantity float64 [n] (NaN unknown).

    events: dicts with ts (ISO 8601 or epoch s/ms) and event_type, optionally item_id, category, amount,
    quantity, channel. Timestamps and numbers go through the event log's own parsers, so a bad value raises
    the same EventLogError, naming the field and the event ("row 2" is events[2])."""
    if not events:
        raise EventLogError(f"{SOURCE}: no events (expected at least one)")
    values = {name: [event.get(name) for event in events] for name in EVENT_FIELDS}
    for name in ("ts", "event_type"):
        missing = [i for i, value in enumerate(values[name]) if value is None]
        if missing:
            raise EventLogError(
                f"{SOURCE}: field '{name}' is missing in event(s) {missing[:5]} (it is required)"
            )
    try:
        ts = _parse_ts(_column(values["ts"], "ts"), SOURCE, "ts")
        if ts.null_count:  # NaN or infinite: no time
            rows = np.flatnonzero(ts.is_null().to_numpy(zero_copy_only=False))[:5].tolist()
            raise EventLogError(f"{SOURCE}: field 'ts' is not a finite number in event(s) {rows} (expected ISO "
                                "8601 or epoch seconds or milliseconds)")
        columns = {"ts": ts.to_numpy().astype(np.int64)}
        for name in NUMERIC:
            parsed = _numeric(_column(values[name], name), SOURCE, name)
            columns[name] = parsed.to_numpy().astype(np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise EventLogError(f"{SOURCE}: {err}") from None
    for name in CATEGORICAL:
        columns[name] = np.array([None if v is None else str(v) for v in values[name]], dtype=object)
    wrong = (columns["amount"] < 0) & ~np.isin(columns["event_type"], list(return_types))
    if wrong.any():
        raise EventLogError(
            f"{SOURCE}: column 'amount': negative amount on a non-return event in row(s) "
            f"{np.flatnonzero(wrong)[:5].tolist()} (expected amount >= 0 unless event_type is "
            f"one of {list(return_types)})"
        )
    return columns


def drop_duplicates(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Events equal to an earlier one in every field removed (as the batch store does), order kept."""
    fields = [np.nan_to_num(columns[k].astype(np.float64), nan=-np.inf) for k in FIELDS]
    _, first = np.unique(np.stack(fields, axis=1), axis=0, return_index=True)
    if len(first) == len(fields[0]):
        return columns
    keep = np.sort(first)
    return {k: v[keep] for k, v in columns.items()}


class Scorer:
    """What scoring needs from one bundle, prepared once: token -> id maps and the model."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.token_ids = {
            name: {token: i for i, token in enumerate(vocab)} for name, vocab in bundle.vocabs.items()
        }
        self.model = bundle.model
        self.representation = bundle.representation
        self.device = next(self.model.parameters()).device

    def encode(self, events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store columns for validated events. A request holds few events, so one dict lookup per token
        beats pyarrow's index_in, which hashes the whole vocabulary on every call."""
        columns = {"ts": events["ts"]}
        for name in CATEGORICAL:
            ids = self.token_ids[name]
            columns[name] = np.array([ids.get(t, 0) for t in events[name]], dtype=np.int32)
        for name in NUMERIC:
            columns[name] = events[name].astype(np.float32)
        return columns

    def history(self, new: dict[str, np.ndarray], customer_id: str | None) -> tuple[SequenceStore, bool]:
        """A one-customer store: the stored events of a known customer plus the new ones, in time order,
        exact duplicates removed (as the batch store does). Returns (store, known)."""
        customers = self.bundle.customers
        row = customers.row.get(customer_id) if customer_id is not None else None
        store = customers.store
        columns = new
        if row is not None:
            begin, end = int(store.offsets[row]), int(store.offsets[row + 1])
            columns = {
                k: np.concatenate([np.asarray(store.columns[k][begin:end]), v]) for k, v in new.items()
            }
        order = np.argsort(columns["ts"], kind="stable")
        columns = {k: v[order] for k, v in columns.items()}
        columns = drop_duplicates(columns)
        n = len(columns["ts"])
        one = SequenceStore(
            pa.array([customer_id or ""], pa.string()),
            np.array([0, n], dtype=np.int64),
            columns,
            store.vocabs,
            store.purchase_types,
            store.return_types,
            None if row is None or store.attributes is None else np.asarray(store.attributes[[row]]),
        )
        return one, row is not None

    def embed(self, store: SequenceStore, as_of: int) -> dict[str, np.ndarray]:
        """predict_step over the last predict_max_len events: embedding float32 [d], forecasts as floats."""
        rows = np.zeros(1, dtype=np.int64)
        starts, lengths = last_events(store, rows, self.bundle.predict_max_len)
        batch = gather(store, starts, lengths)
        batch["context"] = forecast_context(None, store, rows, store.offsets[1:], np.array([as_of]),
                                            self.model.hparams.get("unit", "basket"))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        batch["rows"] = torch.from_numpy(rows)
        with torch.inference_mode():
            out = self.model.predict_step(batch, 0)
        out = {k: v[0].float().cpu().numpy() for k, v in out.items() if k != "rows"}
        if self.representation is not None:  # the bundle's customer vector: sequence + profile + value
            rep, answer = self.representation, None
            if float(rep.value_blend[0]) > 0 and "rate" in out:  # the value blends in the head's answer
                answer = Process.from_columns({c: np.atleast_1d(out[c]) for c in COLUMNS}, self.model.decay,
                                              self.model.span).answer(float(rep.horizon_days[0]))
            out["embedding"] = rep.transform(store, as_of, out["embedding"][None], forecast=answer)[0]
        return out

    def sequence(self, store: SequenceStore) -> np.ndarray:
        """float32 [d]: the encoder's own embedding of the one customer's last predict_max_len events (no
        forecast, no hybrid vector): what the recommender's item scores read."""
        starts, lengths = last_events(store, np.zeros(1, dtype=np.int64), self.bundle.predict_max_len)
        batch = {k: v.to(self.device) for k, v in gather(store, starts, lengths).items()}
        with torch.inference_mode():
            return self.model.embedding(self.model.state(batch))[0].float().cpu().numpy()

    def score(self, events: list[dict], customer_id: str | None, include_embedding: bool = False,
              horizon_days: float | None = None) -> dict:
        return_types = self.bundle.customers.store.return_types
        store, known = self.history(self.encode(validate_events(events, return_types)), customer_id)
        last = int(store.columns["ts"][-1])
        as_of = max(self.bundle.as_of, last + 1)
        out = self.embed(store, as_of)
        embedding = out["embedding"]
        similarity = self.bundle.centroids @ embedding
        nearest = np.argsort(-similarity, kind="stable")[:N_NEAREST]
        segment = int(nearest[0])
        hierarchy = self.bundle.customers.hierarchy
        answer = {
            "customer_id": customer_id,
            "known": known,
            "history_events": store.n_events,
            "events_used": int(min(store.n_events, self.bundle.predict_max_len)),
            "segment": segment,
            "similarity": float(similarity[segment]),
            "path": [
                {"level": int(level), "group": group}
                for level, group in zip(hierarchy.levels, hierarchy.path(segment), strict=True)
            ],
            "nearest_segments": [{"segment": int(s), "similarity": float(similarity[s])} for s in nearest],
            "forecast": None,
        }
        if "rate" in out:
            answer["forecast"] = {"as_of": int(as_of),
                                  **forecast_answer(out, self.bundle.forecast_meta, horizon_days)}
        if include_embedding:
            answer["embedding"] = embedding.tolist()
        return answer


_scorers_lock = threading.Lock()


def scorer(bundle: Bundle) -> Scorer:
    """The bundle's Scorer, built on first use and kept on the bundle, so it goes when the bundle goes (a
    module-level map from bundle to scorer would keep every reloaded-away bundle alive through the scorer's
    own reference to it)."""
    with _scorers_lock:
        if bundle.derived.get("scorer") is None:
            bundle.derived["scorer"] = Scorer(bundle)
        return bundle.derived["scorer"]


def score_events(
    bundle: Bundle, events: list[dict], customer_id: str | None = None, include_embedding: bool = False,
    horizon_days: float | None = None,
) -> dict:
    """Segment, similarity, hierarchy path, nearest segments and forecast (None without a forecasting head)
    for a customer's events; a known customer's stored history comes first. The forecast is as of the
    later of the bundle's as_of and the last event (+1 s), over ``horizon_days`` (default the bundle's).
    EventLogError for invalid events."""
    return scorer(bundle).score(events, customer_id, include_embedding, horizon_days)


def stored_events(store: SequenceStore, row: int) -> list[dict]:
    """A stored customer's events as a client sends them to POST /score (tokens, epoch seconds, None for
    unknown): the inverse of the request encoding, for replaying a history (a loop over one customer's events)."""
    begin, end = int(store.offsets[row]), int(store.offsets[row + 1])
    events = []
    for j in range(begin, end):
        event = {"ts": int(store.columns["ts"][j])}
        for name in CATEGORICAL:
            token = int(store.columns[name][j])
            event[name] = store.vocabs[name][token] if token else None
        for name in NUMERIC:
            value = float(store.columns[name][j])
            event[name] = None if np.isnan(value) else value
        events.append(event)
    return events
