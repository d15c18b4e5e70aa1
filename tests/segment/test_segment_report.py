"""The HTML report: three inline PNGs, the profile table, escaped strings."""

import base64
import re

import numpy as np
import pyarrow as pa

from engine.segment.hierarchy import build_hierarchy
from engine.segment.kmeans import spherical_kmeans
from engine.segment.profiles import segment_profiles
from engine.segment.report import write_report


def test_report_is_self_contained_and_escaped(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 8))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    centroids, labels = spherical_kmeans(x, 5)
    customers = pa.table(
        {
            "recency_days": rng.uniform(0, 90, n),
            "frequency": rng.integers(0, 10, n),
            "spend": rng.uniform(0, 100, n),
            "n_events": rng.integers(1, 50, n),
            "top_category": np.where(np.arange(n) % 2 == 0, "<script>alert(1)</script>", "books"),
            "top_item": ["item"] * n,
            "top_channel": ["web"] * n,
        }
    )
    profiles = segment_profiles(labels, 5, customers)
    hierarchy = build_hierarchy(centroids, np.bincount(labels, minlength=5))
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
    assert len(images) == 3 and page.count("<img") == 3
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert "<th>top_categories</th>" in page and "<th>channel_mix</th>" in page
    assert page.count("<tr>") >= 1 + 5  # header + one row per segment (+ the extra table)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "Q3 &lt;segments&gt;" in page
    assert "<h2>Lookalike &amp; co</h2><table><tr><td>0.9</td></tr></table>" in page
