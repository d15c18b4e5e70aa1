"""The report's figures as inline PNGs (matplotlib Agg; pyplot is never used, so the report leaves the
process's matplotlib backend alone): sizes, 2-D projection, dendrogram, forecast revenue and gains curves."""

from __future__ import annotations

import base64
import io

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from scipy.cluster.hierarchy import dendrogram

MAX_PROJECTED = 5000
BLUE, ORANGE, GREY = "#4c72b0", "#dd8452", "#999999"
THOUSANDS = FuncFormatter(lambda v, _: f"{v:,.0f}")


def png_html(fig: Figure) -> str:
    """An <img> tag holding the figure as an inline base64 PNG."""
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


def _segment_axis(ax, segments: np.ndarray) -> None:
    """Integer segment ids on the x axis: every id up to 16 segments, else whole numbers only."""
    if len(segments) <= 16:
        ax.set_xticks(segments)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("segment")


def sizes_figure(profiles: pa.Table) -> Figure:
    """Customers per segment (integer ticks on both axes)."""
    segments = profiles.column("segment").to_numpy()
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.bar(segments, profiles.column("size").to_numpy(), color=BLUE)
    _segment_axis(ax, segments)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.set_ylabel("customers")
    ax.set_title("Segment sizes")
    return fig


def projection_figure(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> Figure:
    """A seeded sample of at most MAX_PROJECTED customers on the embeddings' first two principal components."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, MAX_PROJECTED), replace=False))
    xy = pca_2d(embeddings[rows])
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels[rows], cmap="tab20", s=4, alpha=0.7)
    if len(np.unique(labels[rows])) <= 20:
        ax.legend(*points.legend_elements(), title="segment", fontsize=7, loc="best")
    ax.set_title(f"Embeddings, PCA of {len(rows):,} sampled customers")
    return fig


def dendrogram_figure(hierarchy) -> Figure:
    """The Ward merges of the k segments; leaves are labelled by segment id (up to 64 segments)."""
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    k = hierarchy.levels[-1]
    if k >= 2:
        dendrogram(hierarchy.linkage, ax=ax, no_labels=k > 64, color_threshold=0, above_threshold_color=BLUE)
    ax.set_xlabel("segment")
    ax.set_ylabel("Ward merge height")
    ax.set_title("Segment hierarchy")
    return fig


def forecast_figure(profiles: pa.Table, expected_spend: np.ndarray | None, labels: np.ndarray,
                    horizon_days: float | None) -> Figure:
    """Forecast revenue by segment (the sum of its customers' expected spend over the horizon), lifetime value
    by segment, and the gains curve of the forecast: the share of forecast revenue held by the top x% of
    customers ranked by their own forecast, and by their segment's mean forecast (targeting whole segments).

    profiles: with size, mean_expected_spend and mean_lifetime_value; expected_spend: float [n] or None
    (no gains curve); labels: int64 [n]."""
    segments = profiles.column("segment").to_numpy()
    size = profiles.column("size").to_numpy().astype(np.float64)
    over = f"next {horizon_days:g} days" if horizon_days else "forecast horizon"
    panels = [("mean_expected_spend", f"Forecast revenue, {over}", BLUE),
              ("mean_lifetime_value", "Lifetime value (discounted)", ORANGE)]
    panels = [p for p in panels if p[0] in profiles.column_names]
    fig = Figure(figsize=(4.2 * (len(panels) + (expected_spend is not None)), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(panels) + (expected_spend is not None)))
    for ax, (column, title, color) in zip(axes, panels, strict=False):
        ax.bar(segments, np.nan_to_num(profiles.column(column).to_numpy(zero_copy_only=False) * size), color=color)
        _segment_axis(ax, segments)
        ax.yaxis.set_major_formatter(THOUSANDS)
        ax.set_ylabel("total, money")
        ax.set_title(title, fontsize=10)
    if expected_spend is not None:
        spend = np.nan_to_num(np.asarray(expected_spend, dtype=np.float64))
        segment_mean = np.bincount(labels, weights=spend, minlength=len(segments)) / np.maximum(
            np.bincount(labels, minlength=len(segments)), 1)
        _gains(axes[-1], spend, {"customers ranked by forecast": spend,
                                 "whole segments, best first": segment_mean[labels]})
        axes[-1].set_title(f"Gains: forecast revenue, {over}", fontsize=10)
    fig.tight_layout()
    return fig


def _gains(ax, revenue: np.ndarray, rankings: dict[str, np.ndarray], dashed: str = "") -> None:
    """Cumulative % of ``revenue`` against the top % of customers under each ranking, with the random diagonal."""
    share = 100 * np.arange(1, len(revenue) + 1) / max(len(revenue), 1)
    total = max(float(revenue.sum()), 1e-12)
    for label, score in rankings.items():
        order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
        ax.plot(share, 100 * np.cumsum(revenue[order]) / total, label=label,
                linestyle="--" if label == dashed else "-")
    ax.plot([0, 100], [0, 100], color=GREY, linewidth=0.8, linestyle=":", label="random")
    ax.set_xlabel("top % of customers")
    ax.set_ylabel("% of revenue")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def cumulative_revenue_html(predicted: dict[str, np.ndarray], actual: np.ndarray, names: dict[str, str],
                            horizon_days: float) -> str:
    """An <img>: the share of the horizon's actual revenue held by the top x% of customers as each method
    ranks them by predicted spend (the higher the curve, the better the ranking), beside the perfect one."""
    actual = np.asarray(actual, dtype=np.float64)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    perfect = "perfect (actual spend)"
    _gains(ax, actual, {perfect: actual, **{names.get(k, k): v for k, v in predicted.items()}}, dashed=perfect)
    ax.set_xlabel("top % of customers by predicted spend")
    ax.set_ylabel("% of actual revenue")
    ax.set_title(f"Cumulative revenue over the {horizon_days:g} days after the cutoff")
    return png_html(fig)
