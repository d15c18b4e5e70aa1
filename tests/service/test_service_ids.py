"""Every id a log accepts is addressable: ids with slashes, spaces, unicode, URL syntax and the longest
accepted length are read and erased over HTTP like any other."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.data.events import MAX_ID_LENGTH
from tests.conftest import run

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ODD = ["a/b", "with space", "ünïcødé 顧客", "100%", "q?x=1&y", "hash#1", "dots/../..", "z" * MAX_ID_LENGTH,
       "c/recommendations", "ends/"]


@pytest.fixture(scope="module")
def odd_bundle(tiny_log, tmp_path_factory):
    """A bundle trained on the tiny log with ten of its customers renamed to ODD ids."""
    table = pq.read_table(tiny_log)
    ids = sorted(set(table["customer_id"].to_pylist()))[:len(ODD)]
    mapping = dict(zip(ids, ODD, strict=True))
    renamed = pa.array([mapping.get(c, c) for c in table["customer_id"].to_pylist()], pa.string())
    root = tmp_path_factory.mktemp("odd")
    pq.write_table(table.set_column(table.schema.get_field_index("customer_id"), "customer_id", renamed),
                   root / "events.parquet")
    out = run(pipeline.run_all, [f"data.path={root / 'events.parquet'}", f"out_dir={root / 'bundle'}"])
    held = pq.read_table(out / "segments.parquet", columns=["customer_id"])["customer_id"]
    assert pc.sum(pc.is_in(held, value_set=pa.array(ODD))).as_py() == len(ODD)  # all accepted at ingest
    return out


def test_every_accepted_id_is_read_and_erased_over_http(serve, odd_bundle):
    with serve(odd_bundle, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        for customer_id in ODD:
            path = f"/customers/{quote(customer_id, safe='')}"
            answer = http.get(path)
            assert answer.status_code == 200 and answer.json()["customer_id"] == customer_id, customer_id
            recommended = http.get(f"{path}/recommendations", params={"n": 3})
            assert recommended.status_code == 200 and "items" in recommended.json(), (customer_id, recommended.text)
            scored = http.post("/score", json={"customer_id": customer_id, "events": []})
            assert scored.status_code in (200, 422), scored.text  # 422: no events, but the id itself is fine
            assert "customer_id" not in str(scored.json().get("error", "")), customer_id
        for customer_id in ODD:
            path = f"/customers/{quote(customer_id, safe='')}"
            assert http.delete(path, headers=AUTH).status_code == 200, customer_id
            assert http.get(path).status_code == 404, customer_id
        assert http.get(f"/customers/{'z' * (MAX_ID_LENGTH + 1)}").status_code == 404
