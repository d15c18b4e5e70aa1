"""Recommendations over HTTP: a stored customer's list with a shop's filters, real-time lists from raw events,
the items that over-index in a segment, and erasure."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pyarrow.parquet as pq

from engine.data import SequenceStore
from engine.embed.online import stored_events

TOKEN = "s3cret"


def customer(bundle_dir, rank: int = 0) -> str:
    """The customer with the ``rank``-th most purchases (0: the most)."""
    store = SequenceStore.open(bundle_dir / "store")
    counts = np.bincount(store.customer_rows()[store.is_purchase()], minlength=store.n_customers)
    return store.customer_ids[int(np.argsort(-counts, kind="stable")[rank])].as_py()


def bought(bundle_dir, customer_id: str) -> set[str]:
    store = SequenceStore.open(bundle_dir / "store")
    row = store.customer_ids.to_pylist().index(customer_id)
    return {e["item_id"] for e in stored_events(store, row) if e["event_type"] == "purchase" and e["item_id"]}


def test_a_stored_customers_recommendations_follow_the_filters(server, bundle_dir):
    cid = customer(bundle_dir)
    answer = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"n": 10}).json()
    items = answer["items"]
    assert answer["customer_id"] == cid and answer["known"] and len(items) == 10
    assert [i["rank"] for i in items] == list(range(1, 11))
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    own = bought(bundle_dir, cid)
    assert {i["item_id"] for i in items if i["bought_before"]} <= own
    new = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"n": 10, "new_only": "true"}).json()
    assert new["filters"]["new_only"] and not any(i["bought_before"] for i in new["items"])
    assert not {i["item_id"] for i in new["items"]} & own
    category = items[0]["category"]
    only = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"category": category}).json()
    assert only["items"] and {i["category"] for i in only["items"]} == {category}
    recent = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"exclude_recent_days": 36500}).json()
    assert not any(i["bought_before"] for i in recent["items"])


def test_bad_recommendation_requests_name_what_is_wrong(server, bundle_dir):
    cid = customer(bundle_dir)
    unknown = httpx.get(f"{server.url}/customers/nobody/recommendations")
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]
    response = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"category": "no-such"})
    assert response.status_code == 422 and "category" in response.json()["error"]
    response = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"n": 0})
    assert response.status_code == 422 and "n" in response.json()["error"]
    response = httpx.post(f"{server.url}/recommend", json={"events": []})
    assert response.status_code == 422 and "events" in response.json()["error"]


def test_real_time_recommendations_from_raw_events(server, bundle_dir):
    cid = customer(bundle_dir)
    store = SequenceStore.open(bundle_dir / "store")
    row = store.customer_ids.to_pylist().index(cid)
    history = stored_events(store, row)
    last = max(e["ts"] for e in history)
    item = next(e["item_id"] for e in history if e["event_type"] == "purchase" and e["item_id"])
    as_of = json.loads((bundle_dir / "manifest.json").read_text())["as_of"]
    now = max(as_of, last) + 3600  # an hour after the bundle's data ends
    fresh = [{"ts": now, "event_type": "purchase", "item_id": item, "amount": 3.0}]
    stranger = httpx.post(f"{server.url}/recommend", json={"events": fresh, "n": 5}).json()
    assert not stranger["known"] and stranger["history_events"] == 1 and len(stranger["items"]) == 5
    assert stranger["as_of"] == now + 1  # as of the later of the bundle's data and the events
    known = httpx.post(f"{server.url}/recommend", json={"customer_id": cid, "events": fresh, "n": 5}).json()
    assert known["known"] and known["history_events"] == len(history) + 1
    # the whole history replayed as raw events gives the stored customer's list
    replay = httpx.post(f"{server.url}/recommend", json={"events": history, "n": 5}).json()
    stored = httpx.get(f"{server.url}/customers/{cid}/recommendations", params={"n": 5}).json()
    assert [i["item_id"] for i in replay["items"]] == [i["item_id"] for i in stored["items"]]
    excluded = httpx.post(f"{server.url}/recommend",
                          json={"customer_id": cid, "events": fresh, "exclude_recent_days": 1}).json()
    assert item not in {i["item_id"] for i in excluded["items"]}


def test_segment_items_over_index_with_lift(server):
    k = len(httpx.get(f"{server.url}/segments").json()["segments"])
    listed = 0
    for segment in range(k):
        answer = httpx.get(f"{server.url}/segments/{segment}/items", params={"n": 10, "min_share": 0.02}).json()
        items = answer["items"]
        assert answer["segment"] == segment and answer["size"] > 0
        lifts = [i["lift"] for i in items]
        assert lifts == sorted(lifts, reverse=True) and all(lift > 1 for lift in lifts)
        for i in items:
            assert i["share"] >= 0.02 and np.isclose(i["lift"], i["share"] / i["base_share"], rtol=1e-5)
            assert i["buyers"] == round(i["share"] * answer["size"]) and i["buyers"] >= 2
        listed += len(items)
    assert listed > 0
    assert httpx.get(f"{server.url}/segments/{k}/items").status_code == 404


def test_an_erased_customer_is_gone_from_recommendations(serve, writable):
    cid = customer(writable, 3)
    assert cid in pq.read_table(writable / "recommendations.parquet")["customer_id"].to_pylist()
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        segment = http.get(f"/customers/{cid}").json()["segment"]
        before = http.get(f"/segments/{segment}/items").json()
        assert http.get(f"/customers/{cid}/recommendations").status_code == 200
        assert http.delete(f"/customers/{cid}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert http.get(f"/customers/{cid}/recommendations").status_code == 404
        assert http.post("/recommend", json={"customer_id": cid, "events": [
            {"ts": 1_800_000_000, "event_type": "purchase", "item_id": "x"}]}).json()["known"] is False
        after = http.get(f"/segments/{segment}/items").json()  # counted anew without the customer
        assert after["size"] == before["size"] - 1
    assert cid not in pq.read_table(writable / "recommendations.parquet")["customer_id"].to_pylist()
