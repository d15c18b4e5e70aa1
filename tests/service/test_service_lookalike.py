"""POST /lookalike: ranked audiences without seeds or excluded ids, paged; malformed requests are 422s."""

import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from engine.bundle import Bundle, BundleError
from engine.index.signature import Weights


@pytest.fixture(scope="module")
def segments(bundle_dir):
    return pq.read_table(bundle_dir / "segments.parquet").to_pydict()


def test_seed_ids_give_a_ranked_audience_without_seeds(client, segments):
    seeds = segments["customer_id"][:5]
    body = client.post(
        "/lookalike",
        json={"seed_ids": seeds + ["nobody"], "size": 40, "exclude_ids": segments["customer_id"][5:10]},
    ).json()
    ids = [a["customer_id"] for a in body["audience"]]
    scores = [a["score"] for a in body["audience"]]
    assert len(ids) == 40 == body["size"] and len(set(ids)) == 40
    assert not set(ids) & set(segments["customer_id"][:10])
    assert scores == sorted(scores, reverse=True)
    assert body["unknown_seed_ids"] == ["nobody"] and body["next_offset"] is None


def test_segment_seeds_and_fraction(client, segments):
    members = {c for c, s in zip(segments["customer_id"], segments["segment"], strict=True) if s == 1}
    body = client.post("/lookalike", json={"segment": 1, "fraction": 0.1, "method": "knn_vote"}).json()
    assert body["requested"] == 30 and body["seeds"] == len(members)
    assert len(body["audience"]) == min(30, 300 - len(members))
    assert not {a["customer_id"] for a in body["audience"]} & members


def test_pages_join_into_the_whole_audience(client, segments):
    request = {"seed_ids": segments["customer_id"][:3], "size": 25}
    whole = client.post("/lookalike", json=request).json()["audience"]
    pages, offset = [], 0
    while offset is not None:
        page = client.post(f"/lookalike?offset={offset}&limit=10", json=request).json()
        pages += page["audience"]
        offset = page["next_offset"]
    assert pages == whole


def test_an_audience_larger_than_what_is_left_returns_everyone_left(client, segments):
    body = client.post("/lookalike", json={"seed_ids": segments["customer_id"][:100], "fraction": 1.0}).json()
    assert body["requested"] == 300 and body["size"] == 200


@pytest.mark.parametrize(
    "body, field, status",
    [
        ({"seed_ids": [], "size": 5}, "seed_ids", 422),
        ({"seed_ids": ["c"], "size": 0}, "size", 422),
        ({"seed_ids": ["c"], "size": 301}, "size", 422),
        ({"seed_ids": ["c"], "fraction": 1.5}, "fraction", 422),
        ({"seed_ids": ["c"], "fraction": 0}, "fraction", 422),
        ({"seed_ids": ["c"]}, "size", 422),
        ({"seed_ids": ["c"], "size": 5, "fraction": 0.1}, "size", 422),
        ({"size": 5}, "seed_ids", 422),
        ({"seed_ids": ["c"], "segment": 1, "size": 5}, "seed_ids", 422),
        ({"seed_ids": "c", "size": 5}, "seed_ids", 422),
        ({"seed_ids": ["c"], "size": "five"}, "size", 422),
        ({"seed_ids": ["c"], "size": 5, "method": "magic"}, "method", 422),
        ({"seed_ids": ["nobody", "nobody-else"], "size": 5}, "seed_ids", 422),
        ({"segment": 99, "size": 5}, "segment 99", 404),
    ],
)
def test_malformed_requests_name_the_field(client, body, field, status):
    response = client.post("/lookalike", json=body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=100001", "limit=ten"])
def test_bad_paging_is_422(client, query):
    response = client.post(f"/lookalike?{query}", json={"seed_ids": ["c0000001"], "size": 5})
    assert response.status_code == 422 and query.split("=")[0] in response.json()["error"]


def test_the_default_signature_method_says_what_sets_the_seeds_apart(client, segments):
    seeds = segments["customer_id"][:20]
    body = client.post("/lookalike", json={"seed_ids": seeds, "size": 30}).json()
    assert body["method"] == "signature" and len(body["audience"]) == 30
    assert not {a["customer_id"] for a in body["audience"]} & set(seeds)
    assert body["signature"] and all(f["z"] > 0 and f["seed_mean"] > f["base_mean"] for f in body["signature"])
    kinds = {f["feature"].split(":")[0] for f in body["signature"]}
    assert kinds <= {"item", "category", "recent item", "recent category", "value"}


def _with_lookalike_weights(bundle: Path, weights: dict) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["lookalike"] = {**manifest.get("lookalike", {}), "weights": weights}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_the_bundles_tuned_weights_rank_the_audience_and_bad_ones_fail_the_load(writable, serve, segments):
    """Every part weighed (the item profile and the low-rank view built on the first query); an entry this
    engine cannot read fails the load, naming the bundle's manifest, rather than every query."""
    seeds = segments["customer_id"][:20]
    every = {"top": 10, "regression": 0.2, "profile": 0.2, "lowrank": 0.2}
    with serve(_with_lookalike_weights(writable, every)) as server:
        body = httpx.post(f"{server.url}/lookalike", json={"seed_ids": seeds, "size": 30}).json()
    assert len(body["audience"]) == 30 and not {a["customer_id"] for a in body["audience"]} & set(seeds)
    assert Bundle.load(writable).lookalike_weights == Weights(**every)
    _with_lookalike_weights(writable, {"top": 10, "vector": 0.1})
    with pytest.raises(BundleError, match=r"manifest.json lookalike.weights: .*expected the parts"):
        Bundle.load(writable)
