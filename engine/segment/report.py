"""A single self-contained HTML report over the segments: sizes, 2-D projection, dendrogram, profiles."""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram

log = logging.getLogger(__name__)

MAX_PROJECTED = 5000
_CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%}"""


def _png(fig: Figure) -> str:
    """An <img> tag holding the figure as an inline base64 PNG (Agg canvas; pyplot is never used,
    so the report leaves the process's matplotlib backend alone)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    """First two principal components via SVD. float [n, d] -> float64 [n, 2]."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T if vt.shape[0] >= 2 else np.column_stack([x @ vt[:1].T, np.zeros(len(x))])


def _sizes_figure(profiles: pa.Table) -> Figure:
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    ax.bar(profiles.column("segment").to_numpy(), profiles.column("size").to_numpy(), color="#4c72b0")
    ax.set_xlabel("segment")
    ax.set_ylabel("customers")
    ax.set_title("Segment sizes")
    return fig


def _projection_figure(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> Figure:
    n = len(labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, MAX_PROJECTED), replace=False))
    xy = pca_2d(embeddings[rows])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels[rows], cmap="tab20", s=4, alpha=0.7)
    if len(np.unique(labels[rows])) <= 20:
        ax.legend(*points.legend_elements(), title="segment", fontsize=7, loc="best")
    ax.set_title(f"Embeddings, PCA of {len(rows)} sampled customers")
    return fig


def _dendrogram_figure(hierarchy) -> Figure:
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    k = hierarchy.levels[-1]
    if k >= 2:
        dendrogram(hierarchy.linkage, ax=ax, no_labels=k > 64, color_threshold=0)
    ax.set_xlabel("segment")
    ax.set_ylabel("Ward merge height")
    ax.set_title("Segment hierarchy")
    return fig


def _value_figure(profiles: pa.Table) -> Figure:
    """Each segment's total expected spend over the forecast horizon, and its total discounted lifetime
    value, side by side (their scales differ by the horizon's share of a life)."""
    segments = profiles.column("segment").to_numpy()
    size = profiles.column("size").to_numpy().astype(np.float64)
    fig = Figure(figsize=(10, 3))
    for ax, column, title, color in zip(fig.subplots(1, 2), ("mean_expected_spend", "mean_lifetime_value"),
                                        ("Expected spend over the forecast horizon", "Lifetime value (discounted)"),
                                        ("#4c72b0", "#dd8452"), strict=True):
        total = np.nan_to_num(profiles.column(column).to_numpy(zero_copy_only=False) * size)
        ax.bar(segments, total, color=color)
        ax.set_xlabel("segment")
        ax.set_ylabel("total, money")
        ax.set_title(title)
    return fig


def cumulative_revenue_html(predicted: dict[str, np.ndarray], actual: np.ndarray, names: dict[str, str],
                            horizon_days: float) -> str:
    """An <img>: the share of the horizon's actual revenue held by the top x% of customers as each method
    ranks them by predicted spend (the higher the curve, the better the ranking), beside the perfect one."""
    actual = np.asarray(actual, dtype=np.float64)
    total = actual.sum()
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    share = np.arange(1, len(actual) + 1) / max(len(actual), 1)
    curves = {"perfect (actual spend)": actual, **{names.get(k, k): v for k, v in predicted.items()}}
    for label, score in curves.items():
        order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
        ax.plot(100 * share, 100 * np.cumsum(actual[order]) / max(total, 1e-12), label=label,
                linestyle="--" if label.startswith("perfect") else "-")
    ax.set_xlabel("top % of customers by predicted spend")
    ax.set_ylabel("% of actual revenue")
    ax.set_title(f"Cumulative revenue over the {horizon_days:g} days after the cutoff")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        return html.escape(", ".join("" if v is None else str(v) for v in value))
    return html.escape("" if value is None else str(value))


def table_html(table: pa.Table) -> str:
    """An escaped HTML <table> of a (small) pyarrow table: one <tr> per row."""
    header = "".join(f"<th>{html.escape(name)}</th>" for name in table.column_names)
    rows = table.to_pylist()
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _overview_html(profiles: pa.Table) -> str:
    """The segments as a marketer reads them: name, size, value, what they buy more than the base (lift)."""
    forecast = "mean_lifetime_value" in profiles.column_names
    head = ("segment", "name", "customers", "share", "value tier", "mean spend so far", "buys more than average",
            "lapsing", *(("still active (p_alive)", "mean lifetime value") if forecast else ()))
    rows = []
    for p in profiles.to_pylist():
        lifted = ", ".join(f"{c.lower()} ×{x:.1f}" for c, x in zip(p["distinctive_categories"], p["category_lift"],
                                                                     strict=True))
        cells = (p["segment"], p["name"], f"{p['size']:,}", f"{p['share']:.1%}", p["value_tier"],
                 "" if p["mean_spend"] is None or np.isnan(p["mean_spend"]) else f"{p['mean_spend']:,.2f}", lifted,
                 "" if np.isnan(p["lapsing_share"]) else f"{p['lapsing_share']:.0%}")
        if forecast:
            cells += tuple("" if p[c] is None or np.isnan(p[c]) else fmt.format(p[c])
                           for c, fmt in (("mean_p_alive", "{:.0%}"), ("mean_lifetime_value", "{:,.2f}")))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return (f"<h2>What sets each segment apart</h2><table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def write_report(
    path: str | os.PathLike,
    profiles: pa.Table,
    embeddings: np.ndarray,
    labels: np.ndarray,
    hierarchy,
    title: str = "segment-engine report",
    extra_tables: dict[str, str] | None = None,
) -> Path:
    """Write the report HTML atomically (temp file then rename) and return its path.

    profiles: the `segment_profiles` table [k]; embeddings: float32 [n, d]; labels: int64 [n];
    hierarchy: a `Hierarchy`; extra_tables: heading -> pre-rendered (trusted) HTML, appended.
    """
    path = Path(path)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(embeddings):
        raise ValueError(f"write_report: {len(labels)} labels but {len(embeddings)} embeddings")
    figures = [
        _sizes_figure(profiles),
        _projection_figure(np.asarray(embeddings), labels),
        _dendrogram_figure(hierarchy),
    ]
    if "mean_lifetime_value" in profiles.column_names and "mean_expected_spend" in profiles.column_names:
        figures.append(_value_figure(profiles))
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(labels)} customers in {profiles.num_rows} segments; levels {html.escape(str(hierarchy.levels))}.</p>",
        *([_overview_html(profiles)] if "name" in profiles.column_names else []),
        "<h2>Segment sizes</h2>" + _png(figures[0]),
        "<h2>Embedding projection</h2>" + _png(figures[1]),
        "<h2>Hierarchy</h2>" + _png(figures[2]),
        *(["<h2>Value by segment</h2>" + _png(figures[3])] if len(figures) > 3 else []),
        "<h2>Segment profiles</h2>" + table_html(profiles),
    ]
    for heading, content in (extra_tables or {}).items():
        sections.append(f"<h2>{html.escape(heading)}</h2>{content}")
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    log.info("report written to %s", path)
    return path
