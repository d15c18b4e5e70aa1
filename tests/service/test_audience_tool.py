"""python -m engine.audience: segments, hierarchy nodes and lookalike audiences to CSV or Parquet, and lookups,
through the same functions as the service (the HTTP answers and the files agree)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.audience import main
from engine.bundle import Bundle

ROOT = Path(__file__).resolve().parents[2]


def test_a_segment_goes_to_csv_closest_first_sized_by_count_or_fraction(bundle_dir, tmp_path):
    segments = pq.read_table(bundle_dir / "segments.parquet")
    labels = segments["segment"].to_numpy()
    out = tmp_path / "segment.csv"
    assert main(["--bundle", str(bundle_dir), "segment", "2", "--out", str(out)]) == 0
    table = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"customer_id": "string"}))
    assert table.num_rows == int((labels == 2).sum()) and set(table["segment"].to_pylist()) == {2}
    scores = table["score"].to_numpy()
    assert np.all(np.diff(scores) <= 1e-6)
    assert set(table["customer_id"].to_pylist()) == set(segments["customer_id"].filter(labels == 2).to_pylist())
    main(["--bundle", str(bundle_dir), "segment", "2", "--count", "5", "--out", str(tmp_path / "five.parquet")])
    five = pq.read_table(tmp_path / "five.parquet")
    assert five["customer_id"].to_pylist() == table["customer_id"].to_pylist()[:5]
    main(["--bundle", str(bundle_dir), "segment", "2", "--fraction", "0.5", "--out", str(tmp_path / "half.csv")])
    assert pacsv.read_csv(tmp_path / "half.csv").num_rows == round(table.num_rows * 0.5)
    assert main(["--bundle", str(bundle_dir), "segment", "99"]) == 2


def test_a_hierarchy_node_holds_the_segments_under_it(bundle_dir, tmp_path):
    hierarchy = json.loads((bundle_dir / "hierarchy.json").read_text())
    level = hierarchy["levels"][0]
    parents = np.asarray(hierarchy["parents"][str(level)])
    labels = pq.read_table(bundle_dir / "segments.parquet")["segment"].to_numpy()
    out = tmp_path / "node.parquet"
    assert main(["--bundle", str(bundle_dir), "node", "--level", str(level), "--group", "0", "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == int((parents[labels] == 0).sum())
    assert set(table["segment"].to_pylist()) <= set(np.flatnonzero(parents == 0).tolist())
    assert main(["--bundle", str(bundle_dir), "node", "--level", "7777", "--group", "0"]) == 2


def test_a_lookalike_file_is_the_services_audience(bundle_dir, server, tmp_path):
    ids = pq.read_table(bundle_dir / "segments.parquet")["customer_id"].to_pylist()
    seeds, exclude = ids[:20], ids[20:25]
    (tmp_path / "seeds.txt").write_text("\n".join(seeds) + "\nnobody\n")
    pacsv.write_csv(pq.read_table(bundle_dir / "segments.parquet").slice(20, 5).select(["customer_id"]),
                    tmp_path / "exclude.csv")
    out = tmp_path / "lookalike.csv"
    run = subprocess.run([sys.executable, "-m", "engine.audience", "--bundle", str(bundle_dir), "lookalike",
                          "--seeds", str(tmp_path / "seeds.txt"), "--exclude", str(tmp_path / "exclude.csv"),
                          "--count", "40", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 seed ids are not in the bundle" in run.stderr
    table = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"customer_id": "string"}))
    answer = httpx.post(f"{server.url}/lookalike", json={"seed_ids": seeds + ["nobody"], "size": 40,
                                                         "exclude_ids": exclude}).json()
    assert table["customer_id"].to_pylist() == [a["customer_id"] for a in answer["audience"]]
    assert not set(table["customer_id"].to_pylist()) & set(seeds + exclude) and table.num_rows == 40


def test_lookups_and_recommendations_match_the_service(bundle_dir, server, tmp_path, capsys):
    cid = pq.read_table(bundle_dir / "segments.parquet")["customer_id"][4].as_py()
    assert main(["--bundle", str(bundle_dir), "customer", cid]) == 0
    assert json.loads(capsys.readouterr().out) == httpx.get(f"{server.url}/customers/{cid}").json()
    out = tmp_path / "picks.csv"
    assert main(["--bundle", str(bundle_dir), "recommend", cid, "--n", "5", "--out", str(out)]) == 0
    picks = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"item_id": "string"}))
    served = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"n": 5}).json()["items"]
    assert picks["item_id"].to_pylist() == [i["item_id"] for i in served]
    assert main(["--bundle", str(bundle_dir), "customer", "nobody"]) == 2


def test_an_erased_customer_is_in_no_export(writable, tmp_path):
    segments = pq.read_table(writable / "segments.parquet")
    victim, segment = segments["customer_id"][0].as_py(), segments["segment"][0].as_py()
    Bundle.load(writable).erase(victim)
    out = tmp_path / "after.csv"
    main(["--bundle", str(writable), "segment", str(segment), "--out", str(out)])
    after = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"customer_id": "string"}))
    assert victim not in after["customer_id"].to_pylist()
    assert main(["--bundle", str(writable), "customer", victim]) == 2
