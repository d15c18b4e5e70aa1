"""The report's data-quality section: what the event log held, per source file and per channel, in a
marketer's numbers (percentages, thousands separators), from engine.data.quality's data_quality.json."""

from __future__ import annotations

import html
from pathlib import Path

from engine.segment.formats import count, number, percent
from engine.segment.tables import table_html

DROPPED = {"null_customer": "no customer", "null_event_type": "no event type", "null_ts": "no time",
           "ts_not_finite": "time not a number", "ts_out_of_range": "time out of range",
           "unaddressable_customer": "unusable customer id", "unmapped_customer": "key not in the id map",
           "conflicting_customer": "key mapped to several customers"}
FIELDS = {"customer_id": "customer", "ts": "time", "event_type": "event type", "item_id": "item",
          "category": "category", "amount": "amount", "quantity": "quantity", "channel": "channel"}


def _share(n: int, rows: int) -> str:
    """12 of 1,000 -> "12 (1.2%)"; 0 -> "0"; a share under 0.1% -> "<0.1%"."""
    if not n:
        return "0"
    share = n / max(rows, 1)
    return f"{count(n)} ({'<0.1%' if share < 0.001 else percent(share)})"


def _dropped(entry: dict) -> str:
    why = ", ".join(f"{count(n)} {DROPPED[reason]}" for reason, n in entry["dropped"].items() if n)
    return _share(entry["rows_dropped"], entry["rows_read"]) + (f": {why}" if why else "")


def _per_customer(entry: dict) -> list[str]:
    d = entry.get("events_per_customer") or {}
    if not d.get("customers"):
        return ["", "", ""]
    return [count(d["customers"]), f"{number(d['median'], 0)} ({number(d['p99'], 0)})", percent(d["share_one_event"])]


def _groups(quality: dict) -> list[tuple[str, dict]]:
    """(label, figures): each file, each source (when there are several), each channel (when there are
    several), and the whole log (when there are several files)."""
    sources = quality.get("sources") or []
    files = [((f"{f['source']}: " if sources else "") + Path(f["file"]).name, f) for f in quality["files"]]
    channels = [(f"channel {c['channel'] if c['channel'] is not None else '(none)'}", c) for c in quality["channels"]]
    return (files + [(f"source {s['source']}", s) for s in sources]
            + ([("all files", quality["total"])] if len(files) > 1 else []) + (channels if len(channels) > 1 else []))


def _lead(quality: dict) -> str:
    total = quality["total"]
    rows, d = total["rows_read"], total.get("events_per_customer") or {}
    text = (f"{count(rows)} events read from {len(quality['files'])} file(s) at {quality['run_at'][:16].replace('T', ' ')} "
            f"UTC: {count(total['rows_kept'])} kept, {_share(total['rows_dropped'], rows)} dropped as bad rows"
            + (" or keys the id map lacks or maps to several customers" if any(
                total["dropped"].get(r) for r in ("unmapped_customer", "conflicting_customer")) else "") + ", "
            f"{_share(total['duplicates'], rows)} duplicates removed.")
    if d.get("customers"):
        text += (f" {count(d['customers'])} customers; events per customer: median {number(d['median'], 0)}, middle "
                 f"half {number(d['p25'], 0)} to {number(d['p75'], 0)}, top 1% from {number(d['p99'], 0)}, most "
                 f"{count(d['max'])}; {percent(d['share_one_event'])} of customers have a single event.")
    overlap = quality.get("overlap")
    if overlap:
        pairs = "; ".join(f"{Path(a).name} and {Path(b).name}: {count(p['customers'])}"
                          for p in overlap["pairs"] for a, b in [p["files"]])
        text += (f" {count(overlap['in_several_files'])} of {count(overlap['customers'])} customers appear in "
                 f"more than one file" + (f" ({pairs})." if pairs else "."))
    for source in quality.get("sources") or []:
        shared = ", ".join(f"{count(n)} with {other}" for other, n in source["shared_customers"].items())
        customers = (source.get("events_per_customer") or {}).get("customers", 0)
        text += f" Source {source['source']}: {count(customers)} customers" + (f", {shared}." if shared else ".")
    types = total.get("unknown_types") or {}
    if types:
        text += " Unknown event types: " + ", ".join(f"{name} ({count(n)})" for name, n in types.items()) + "."
    limits = quality.get("thresholds")
    if limits:
        text += " Every file is within the thresholds (" + ", ".join(
            f"data.{key} {percent(v)}" for key, v in limits.items()) + ")."
    return html.escape(text)


def data_quality_html(quality: dict) -> str:
    """The section's HTML: a lead paragraph, then the events table and the missing-values table."""
    floor = quality["ts_floor"][:4]
    headers = ["source", "events read", "dropped (why)", "duplicates", "out of order", f"dated before {floor}",
               "dated after the run", "unknown event type", "item without category", "customers",
               "events per customer: median (top 1%)", "customers with one event"]
    rows = []
    groups = _groups(quality)
    for label, e in groups:
        n = e["rows_read"]
        rows.append([label, count(n), _dropped(e)]
                    + [_share(e[k], n) for k in ("duplicates", "out_of_order", "ts_before_floor", "ts_in_future",
                                                 "unknown_event_type", "item_without_category")]
                    + _per_customer(e))
    nulls = [[label] + [("absent" if field in e.get("absent_columns", ()) else
                         _share(e["nulls"][field], e["rows_read"])) for field in FIELDS]
             for label, e in groups]
    rows, nulls = ([[html.escape(cell) for cell in row] for row in table] for table in (rows, nulls))
    return (f'<p class="lead">{_lead(quality)}</p>' + table_html(headers, rows, {0, 2})
            + "<h3>Missing values (rows where the column is null or empty)</h3>"
            + table_html(["source", *FIELDS.values()], nulls, {0})
            + '<p class="lead">Out of order: an event its file holds after the customer\'s next event in time. '
            "Every figure is in the bundle's <code>data_quality.json</code>.</p>")
