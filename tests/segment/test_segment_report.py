"""The HTML report: inline PNGs, a description per segment, formatted tables, channel bars, escaped strings."""

import base64
import json
import re

import numpy as np
import pyarrow as pa

from engine.segment.hierarchy import build_hierarchy
from engine.segment.kmeans import spherical_kmeans
from engine.segment.profiles import segment_profiles
from engine.segment.report import write_report


def _segments(n: int = 600, k: int = 5, forecast: bool = False):
    """A random base in k segments with its profiles (and forecast columns), hierarchy and embeddings."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centroids, labels = spherical_kmeans(x, k)
    columns = {
        "recency_days": rng.uniform(0, 90, n),
        "frequency": rng.integers(0, 10, n),
        "spend": rng.uniform(0, 2000, n),  # totals in the hundreds of thousands
        "n_events": rng.integers(1, 50, n),
        "top_category": np.where(np.arange(n) % 2 == 0, "<script>alert(1)</script>", "books"),
        "top_item": ["item"] * n,
        "top_channel": np.where(np.arange(n) % 3 == 0, "app", "web"),
    }
    if forecast:
        columns.update(expected_spend=rng.gamma(1.0, 300.0, n), p_churn=rng.uniform(0, 1, n),
                       lifetime_value=rng.gamma(1.0, 3000.0, n))
        columns["likely_to_lapse"] = columns["p_churn"] > 0.5
    profiles = segment_profiles(labels, k, pa.table(columns))
    hierarchy = build_hierarchy(centroids, np.bincount(labels, minlength=k))
    return profiles, x, labels, hierarchy, columns.get("expected_spend")


def test_report_is_self_contained_and_escaped(tmp_path):
    profiles, x, labels, hierarchy, _ = _segments()
    path = write_report(
        tmp_path / "out" / "report.html",
        profiles,
        x,
        labels,
        hierarchy,
        title="Q3 <segments>",
        extra_tables={"Lookalike & co": "<table><tr><td>0.9</td></tr></table>"},
    )
    assert path.is_file() and not (tmp_path / "out" / "report.html.tmp").exists()
    page = path.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="figure" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(images) == 3 and page.count("<img") == 3  # sizes, projection, dendrogram: no forecast, no chart
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert '<th class="text">top categories</th>' in page and "channel mix (customers by main channel)" in page
    assert page.count("<tr>") >= 1 + 5  # header + one row per segment (+ the extra table)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page and "http" not in page  # no script, nothing fetched
    assert "Q3 &lt;segments&gt;" in page
    assert "<h2>Lookalike &amp; co</h2><table><tr><td>0.9</td></tr></table>" in page


def test_report_reads_as_a_marketer_would(tmp_path):
    profiles, x, labels, hierarchy, expected_spend = _segments(forecast=True)
    page = write_report(tmp_path / "report.html", profiles, x, labels, hierarchy, expected_spend=expected_spend,
                        horizon_days=30).read_text(encoding="utf-8")
    # a one-line description per segment, generated from its profile
    sentences = re.findall(r'<span class="desc">([^<]+)</span>', page)
    assert len(sentences) == 5 and all("of customers" in s and "over the next 30 days" in s and "churn risk" in s
                                       for s in sentences)
    # numbers as people read them: no scientific notation, shares as percentages, thousands separated
    text = re.sub(r'src="data:image/png;base64,[^"]*"', "", page.split("<body>")[1])
    assert not re.search(r"\de[+-]?\d", text)
    total = profiles["total_spend"].to_numpy()
    assert total.max() > 1e5 and f"<td>{total[0]:,.0f}</td>" in page
    assert f"<td>{profiles['share'][0].as_py():.0%}</td>" in page
    # the channel mix as an inline stacked bar per segment, one part per channel, never its JSON
    assert page.count('<div class="mix-bar"') == 5
    parts = re.findall(r'<span style="width:([0-9.]+)%;background:#[0-9a-f]{6}">(web|app) \d+%</span>', page)
    assert len(parts) == sum(len(json.loads(m)) for m in profiles["channel_mix"].to_pylist())
    assert '{"web"' not in page and "{&quot;" not in page
    # forecast revenue and churn per segment, and the forecast charts
    assert "<th>forecast revenue (next 30 days)</th><th>churn risk</th><th>likely to lapse</th>" in page
    assert "<h2>Value by segment: forecast revenue and gains</h2>" in page and page.count("<img") == 4
    # lift against the base for spend and frequency, and the hierarchy explained
    assert "spend ×" in page and "frequency ×" in page
    assert "<b>level 5</b>: the 5 segments themselves" in page and "level_L" in page
    assert re.search(r"<b>level 4</b>, 4 groups: segments \d \+ \d \(\d+%\); the other 3 segments stand alone", page)


def test_profiles_lift_spend_and_frequency_against_the_base():
    profiles, *_ = _segments()
    size = profiles["size"].to_numpy()
    base = (profiles["mean_spend"].to_numpy() * size).sum() / size.sum()
    assert np.allclose(profiles["spend_lift"].to_numpy(), profiles["mean_spend"].to_numpy() / base)
    assert np.allclose((profiles["frequency_lift"].to_numpy() * size).sum() / size.sum(), 1.0)


def test_the_size_chart_ticks_whole_segments_and_customers():
    from engine.segment.figures import sizes_figure

    profiles, *_ = _segments(n=30, k=3)
    ax = sizes_figure(profiles).axes[0]
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert all(float(t).is_integer() for t in ax.get_yticks())
