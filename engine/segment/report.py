"""A single self-contained HTML report over the segments, for a marketer: each segment's name, description,
value, forecast and lift against the base; sizes, forecast revenue and gains charts; the hierarchy explained;
the 2-D projection, the full profile and the log's data quality. Figures are inline PNGs
(engine.segment.figures), tables escaped HTML (engine.segment.tables); no script, no external resource. It
fits a 1366x768 screen's width."""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.segment import figures
from engine.segment.data_quality import data_quality_html
from engine.segment.describe import descriptions
from engine.segment.formats import count, percent
from engine.segment.tables import overview_html, profile_tables_html

log = logging.getLogger(__name__)

MAX_GROUPS = 12  # merged groups listed per hierarchy level

_CSS = """body{font-family:system-ui,sans-serif;font-size:14px;margin:1em auto;padding:0 1em;max-width:1320px;
color:#222}h1{font-size:22px;margin:.2em 0}h2{font-size:18px;margin:1.2em 0 .4em}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px}table.wide{width:100%}.nw{white-space:nowrap}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:right;vertical-align:top}th{background:#eee;font-weight:600}.text{text-align:left}td.text{min-width:11em}
.desc{color:#555}.lead{color:#444}.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.row>div{flex:1 1 520px;min-width:0}.row>div.note{flex:1 1 380px}img{max-width:100%;height:auto}
.mix-bar{display:flex;width:260px;height:16px;background:#eee;font-size:11px;line-height:16px;color:#fff}
.mix-bar>span{overflow:hidden;white-space:nowrap;padding-left:3px;box-sizing:border-box}
.legend{font-size:12px}.swatch{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}"""


def _row(*cells: str, note: int | None = None) -> str:
    """Side-by-side blocks that wrap below each other on a narrow screen; ``note``: the index of a text block."""
    return '<div class="row">' + "".join(
        f'<div class="note">{c}</div>' if j == note else f"<div>{c}</div>" for j, c in enumerate(cells)) + "</div>"


def _hierarchy_note(hierarchy, profiles: pa.Table) -> str:
    """What the hierarchy levels mean, and which segments each coarser group holds (with its share)."""
    k = hierarchy.levels[-1]
    share = np.zeros(k)
    share[profiles.column("segment").to_numpy()] = profiles.column("share").to_numpy()
    items = []
    for level in hierarchy.levels[:-1]:
        parent = hierarchy.parents[level]
        merged = [np.flatnonzero(parent == g) for g in range(level)]
        merged = [m for m in merged if len(m) > 1]
        shown = "; ".join(f"{' + '.join(map(str, m))} ({percent(share[m].sum())})" for m in merged[:MAX_GROUPS])
        more = f"; and {len(merged) - MAX_GROUPS} more groups" if len(merged) > MAX_GROUPS else ""
        alone = k - sum(len(m) for m in merged)
        items.append(f"<li><b>level {level}</b>, {level} groups: segments {html.escape(shown + more)}"
                     + (f"; the other {alone} segments stand alone" if alone else "") + "</li>")
    items.append(f"<li><b>level {k}</b>: the {k} segments themselves</li>")
    coarser = ("Each customer's group at every level is in <code>segments.parquet</code> (columns "
               "<code>level_L</code>; a group is numbered by its lowest segment), for audiences broader than one "
               "segment."
               if len(hierarchy.levels) > 1 else
               "There is no coarser level here (by default they are the powers of 4 below k); choose them with "
               "<code>segment.levels=[2,4]</code>.")
    return ("<p>Segments that are alike are merged, two at a time, into coarser groups: the lower two branches "
            "join in the dendrogram, the more alike the customers of the two are (size-weighted Ward distance "
            "between their centres). Cutting the tree gives the levels:</p>"
            f"<ul>{''.join(items)}</ul><p>{coarser}</p>")


def write_report(
    path: str | os.PathLike,
    profiles: pa.Table,
    embeddings: np.ndarray,
    labels: np.ndarray,
    hierarchy,
    title: str = "segment-engine report",
    extra_tables: dict[str, str] | None = None,
    expected_spend: np.ndarray | None = None,
    horizon_days: float | None = None,
    data_quality: dict | None = None,
) -> Path:
    """Write the report HTML atomically (temp file then rename) and return its path.

    profiles: the `segment_profiles` table [k], with describe's columns and a description when present (else
    the description is generated here); embeddings: float32 [n, d]; labels: int64 [n]; hierarchy: a
    `Hierarchy`; extra_tables: heading -> pre-rendered (trusted) HTML, appended; expected_spend: float [n],
    each customer's forecast spend over ``horizon_days`` (the gains curve), or None; data_quality: the run's
    data_quality.json (engine.data.quality), shown as the "Data quality" section, or None.
    """
    path = Path(path)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(embeddings):
        raise ValueError(f"write_report: {len(labels)} labels but {len(embeddings)} embeddings")
    described = (profiles.column("description").to_pylist() if "description" in profiles.column_names
                 else descriptions(profiles, horizon_days))
    forecast = "mean_expected_spend" in profiles.column_names
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{count(len(labels))} customers in {profiles.num_rows} segments. Lift is a segment\'s '
        "rate over the whole base's: ×2.0 means twice as many of its customers buy the category (or use the "
        "channel), or twice the spend or purchases per customer, as the average customer."
        + (" Churn risk is the mean chance of no purchase over the forecast horizon; likely to lapse, the share of "
           "customers for whom that chance is over 50%." if forecast else "") + "</p>",
        "<h2>What sets each segment apart</h2>" + overview_html(profiles, described, horizon_days),
        "<h2>Segment sizes and embeddings</h2>" + _row(figures.png_html(figures.sizes_figure(profiles)),
                                                       figures.png_html(figures.projection_figure(
                                                           np.asarray(embeddings), labels))),
    ]
    if forecast:
        fig = figures.forecast_figure(profiles, expected_spend, labels, horizon_days)
        sections.append("<h2>Value by segment: forecast revenue and gains</h2>" + figures.png_html(fig) +
                        '<p class="lead">Gains: the share of forecast revenue held by the top x% of customers; the '
                        "further above the diagonal, the more the revenue is concentrated (the bundle holds no "
                        "realised future; stage=evaluate scores the forecast against one).</p>")
    sections += [
        "<h2>Hierarchy</h2>" + _row(figures.png_html(figures.dendrogram_figure(hierarchy)),
                                    _hierarchy_note(hierarchy, profiles), note=1),
        "<h2>Segment profiles</h2>" + profile_tables_html(profiles),
    ]
    if data_quality is not None:
        sections.append("<h2>Data quality</h2>" + data_quality_html(data_quality))
    for heading, content in (extra_tables or {}).items():
        sections.append(f"<h2>{html.escape(heading)}</h2>{content}")
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    log.info("report written to %s", path)
    return path
