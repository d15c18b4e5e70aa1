"""A run's inputs besides the event log's rows: how to read the log from the config (one source, or
data.sources with data.id_map: engine.data.sources) and the customer attributes (data.attributes:
engine.data.attributes), with the table that says who each segment's customers are."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig

from engine.data import Columns, EventLogSpec, SequenceStore
from engine.data.attributes import AttributeEncoder, AttributeSpec, lookup, read_attributes
from engine.data.events import CANONICAL, Source
from engine.data.sources import IdMap

log = logging.getLogger(__name__)


@dataclass
class Attributes:
    """The customer attributes of a run: the table read (data.attributes.path) and its encoder."""

    table: pa.Table
    encoder: AttributeEncoder


def event_log_spec(cfg: DictConfig, path: str | None) -> EventLogSpec:
    """How to read the run's log: ``path`` (data.path, or the generated default), or data.sources and
    data.id_map (``path`` None)."""
    d = cfg.data
    columns = Columns(**d.columns)
    sources = []
    for i, entry in enumerate(d.sources):
        unknown = sorted(set(entry.columns) - set(CANONICAL))
        if unknown:
            raise ValueError(f"data.sources[{i}].columns: no field {unknown[0]!r} (expected fields of {list(CANONICAL)})")
        # fields a source leaves unset take data.<key>: its columns, event names, channel, time zone, format
        sources.append(Source(str(entry.path), entry.name or f"source{i}", Columns(**{**d.columns, **entry.columns}),
                              entry.format if entry.format != "auto" else d.format,
                              {**d.event_types, **entry.event_types},
                              entry.channel if entry.channel is not None else d.channel,
                              entry.timezone if entry.timezone is not None else d.timezone, entry.map_ids))
    ids = d.id_map
    id_map = IdMap(str(ids.path), ids.key, ids.customer_id, ids.source, ids.unmapped) if ids.path else None
    return EventLogSpec(path, columns, list(d.purchase_types),
                        list(d.return_types), d.on_bad_rows, d.dedupe, d.min_year, list(d.known_types),
                        dict(d.event_types), d.channel, d.timezone, d.format, sources, id_map)


def attribute_spec(cfg: DictConfig) -> AttributeSpec:
    a = cfg.data.attributes
    return AttributeSpec(str(a.path), a.id_column, list(a.report_only), list(a.drop), a.max_categories)


def load_attributes(cfg: DictConfig, store: SequenceStore, encoder: dict | None = None) -> Attributes | None:
    """data.attributes: the table, its encoder (``encoder``: a bundle's, else fitted on the store's customers)
    and, with data.attributes.model, the store's model inputs (store.attributes, set in place)."""
    a = cfg.data.attributes
    if not a.path:
        if encoder:
            log.warning("the bundle's model was trained with customer attributes and data.attributes.path is not "
                        "set: every customer's attributes are unknown to it")
        return None
    table = read_attributes(attribute_spec(cfg))
    fitted = (AttributeEncoder.from_dict(encoder) if encoder else
              AttributeEncoder.fit(table, list(a.report_only), a.max_categories, store.customer_ids))
    known = int((lookup(table["customer_id"], store.customer_ids) >= 0).sum())
    log.info("attributes: %d rows in %s, %d of %d customers known; %s", table.num_rows, a.path, known,
             store.n_customers, f"{fitted.width} model inputs from {fitted.numeric + fitted.categorical}"
             if a.model or encoder else "describing the segments only (data.attributes.model=false)")
    if a.model or encoder:
        store.attributes = fitted.matrix(table, store.customer_ids)
    return Attributes(table, fitted)


def unknown_attributes(store: SequenceStore, attributes: Attributes | None) -> np.ndarray | None:
    """float32 [width]: the model inputs of a customer the attributes table lacks; None without inputs."""
    if store.attributes is None or attributes is None:
        return None
    return attributes.encoder.matrix(attributes.table, [""])[0]  # "" is no customer id


def attributes_markdown(who: list[dict], top: int = 2) -> str:
    """A table of segments x attribute columns: each cell the values most over-represented (share, lift)."""
    columns = list(dict.fromkeys(c for w in who for c in w["columns"]))
    lines = ["| segment | customers with attributes | " + " | ".join(columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for w in who:
        cells = []
        for c in columns:
            d = w["columns"].get(c) or {}
            if "top" in d:
                cells.append(", ".join(f"{t['value']} ({t['share']:.0%}, x{t['lift']:.1f})" for t in d["top"][:top]))
            elif "mean" in d and d["mean"] is not None:
                cells.append(f"{d['mean']:.3g} (base {d['base_mean']:.3g})")
            else:
                cells.append("")
        lines.append(f"| {w['segment']} | {w['known_share']:.0%} of {w['size']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
