"""POST /score: real-time scoring agrees with the batch embedding; a known customer's history comes first;
malformed events are 422s naming the field."""

import numpy as np
import pytest

from engine.bundle import Bundle


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def stored(bundle):
    return bundle.customers


@pytest.mark.parametrize("nth", [0, 10, 100])
def test_stored_history_as_a_new_customer_reproduces_the_batch_embedding(
    client, bundle, stored, history, nth
):
    whole = np.flatnonzero(stored.store.lengths() <= bundle.predict_max_len)  # embedded whole in both paths
    row = int(whole[nth])
    events = history(stored.store, row)
    body = client.post("/score?include_embedding=true", json={"events": events}).json()
    assert body["known"] is False and body["history_events"] == len(events)
    assert np.abs(np.array(body["embedding"]) - stored.embeddings[row]).max() < 1e-4
    batch = stored.segments.slice(row, 1).to_pylist()[0]
    assert body["segment"] == batch["segment"]
    assert body["similarity"] == pytest.approx(batch["similarity"], abs=1e-4)
    assert body["forecast"]["p_churn"] == pytest.approx(stored.forecast["p_churn"][row].as_py(), abs=1e-4)
    year = client.post("/score", json={"events": events, "horizon_days": 365}).json()["forecast"]
    assert year["horizon_days"] == 365 and year["expected_spend"] >= body["forecast"]["expected_spend"]
    assert year["p_alive"] == pytest.approx(body["forecast"]["p_alive"], abs=1e-6)


def test_known_customer_history_is_appended(client, stored, history):
    row = 5
    customer_id = stored.ids[row].as_py()
    old = history(stored.store, row)
    new = [
        {
            "ts": old[-1]["ts"] + 3600 * h,
            "event_type": "purchase",
            "item_id": old[0]["item_id"],
            "amount": 25.0,
            "channel": "web",
        }
        for h in (1, 2)
    ]
    known = client.post(
        "/score?include_embedding=true", json={"customer_id": customer_id, "events": new}
    ).json()
    alone = client.post("/score?include_embedding=true", json={"events": old + new}).json()
    assert known["known"] is True and known["history_events"] == len(old) + 2
    assert np.abs(np.array(known["embedding"]) - np.array(alone["embedding"])).max() < 1e-5
    assert known["segment"] == alone["segment"]
    assert known["forecast"]["as_of"] > old[-1]["ts"]


def test_a_new_customer_gets_segment_path_and_nearest_segments(client):
    events = [
        {"ts": "2024-06-01T10:00:00Z", "event_type": "view", "item_id": "never-seen", "channel": "app"},
        {"ts": "2024-06-01T10:05:00", "event_type": "purchase", "amount": "19.90", "quantity": 1},
    ]
    body = client.post("/score", json={"customer_id": "brand-new", "events": events}).json()
    assert body["known"] is False and "embedding" not in body
    nearest = body["nearest_segments"]
    assert len(nearest) == 3 and nearest[0]["segment"] == body["segment"]
    assert nearest[0]["similarity"] >= nearest[1]["similarity"] >= nearest[2]["similarity"]
    assert body["path"][-1]["group"] == body["segment"]
    assert 0 <= body["forecast"]["p_churn"] <= 1 and body["forecast"]["expected_purchases"] >= 0


GOOD = {"ts": 1714557600, "event_type": "view"}


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {
                "events": [
                    {"ts": "2024-05-01", "event_type": "view"},
                    {"ts": "2024-13-01", "event_type": "view"},
                ]
            },
            "row 1: '2024-13-01'",
        ),
        ({"events": [{"ts": "yesterday", "event_type": "view"}]}, "ts"),
        ({"events": [{"ts": 1714557600}]}, "event_type"),
        ({"events": [{"event_type": "view"}]}, "ts"),
        ({"events": [GOOD, {"ts": "2024-05-01", "event_type": "view"}]}, "ts"),  # epoch and ISO mixed
        ({"events": [{**GOOD, "amount": "lots"}]}, "amount"),
        ({"events": [{**GOOD, "amount": -5.0}]}, "amount"),  # negative on a non-return
        ({"events": [{**GOOD, "ts": True}]}, "ts"),
        ({"events": [{**GOOD, "item_id": 42}]}, "item_id"),
        ({"events": [{**GOOD, "colour": "red"}]}, "colour"),
        ({"events": []}, "events"),
        ({"events": "view"}, "events"),
        ({"customer_id": 7, "events": [GOOD]}, "customer_id"),
        ({}, "events"),
    ],
)
def test_malformed_events_are_422_naming_the_field(client, body, field):
    response = client.post("/score", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]


def test_non_json_and_non_finite_numbers_are_rejected(client):
    assert (
        client.post("/score", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    body = b'{"events": [{"ts": 1714557600, "event_type": "purchase", "amount": NaN}]}'
    response = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "amount" in response.json()["error"]
