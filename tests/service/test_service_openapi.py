"""The OpenAPI schema: every endpoint documents its answer (a model with an example) and its errors, the
writes declare the bearer scheme, and real answers of a served bundle, errors included, match the models."""

import httpx
import pyarrow.parquet as pq
import pytest

from engine.bundle import Bundle
from engine.service import schemas

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ, POST, WRITE = {422, 500}, {413, 422, 500}, {401, 403, 422, 500}
ENDPOINTS = {  # (method, path): (answer model, the error statuses it must document)
    ("get", "/health"): (schemas.HealthAnswer, {500}),
    ("get", "/segments"): (schemas.SegmentsAnswer, {500}),
    ("get", "/segments/{segment_id}"): (schemas.SegmentAnswer, READ | {404}),
    ("get", "/segments/{segment_id}/items"): (schemas.SegmentItemsAnswer, READ | {404}),
    ("get", "/customers/{customer_id}"): (schemas.CustomerAnswer, READ | {404}),
    ("get", "/customers/{customer_id}/recommendations"): (schemas.RecommendationsAnswer, READ | {404, 409}),
    ("post", "/score"): (schemas.ScoreAnswer, POST),
    ("post", "/recommend"): (schemas.RecommendationsAnswer, POST | {409}),
    ("post", "/lookalike"): (schemas.LookalikeAnswer, POST | {404}),
    ("delete", "/customers/{customer_id}"): (schemas.ErasedAnswer, WRITE | {404}),
    ("post", "/reload"): (schemas.ReloadAnswer, WRITE | {409, 413}),
}


def ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def matches(model, answer: dict) -> dict:
    """``answer`` validated (strictly: no field missing, extra, or of another type) against ``model``."""
    model.model_validate(answer, strict=True)
    return answer


@pytest.fixture(scope="module")
def openapi(server) -> dict:
    return server.app.openapi()


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return Bundle.load(bundle_dir)


def test_every_endpoint_documents_its_answer_with_an_example_and_its_errors(openapi):
    documented = {(method, path) for path, ops in openapi["paths"].items() for method in ops}
    assert documented == set(ENDPOINTS)
    components = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in components  # FastAPI's 422 body is not the one the service sends
    for (method, path), (model, errors) in ENDPOINTS.items():
        responses = openapi["paths"][path][method]["responses"]
        assert ref(responses["200"]) == model.__name__, (method, path)
        examples = components[model.__name__]["examples"]
        assert examples and all(matches(model, example) for example in examples)
        assert errors <= {int(status) for status in responses if status != "200"}, (method, path)
        for status, response in responses.items():
            if status != "200":
                assert ref(response) == "ErrorBody" and response["description"], (method, path, status)
    assert matches(schemas.ErrorBody, components["ErrorBody"]["examples"][0])


def test_the_writes_and_only_they_declare_the_bearer_scheme(openapi):
    scheme = openapi["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "SEGMENT_ENGINE_TOKEN" in scheme["description"]
    for (method, path), (_, errors) in ENDPOINTS.items():
        security = openapi["paths"][path][method].get("security")
        assert security == ([{"bearer": []}] if 401 in errors else None), (method, path)


def test_real_reads_match_their_models(client, bundle, history):
    customer_id = bundle.customers.ids[0].as_py()
    events = history(bundle.customers.store, 0)[-20:]
    matches(schemas.HealthAnswer, client.get("/health").json())
    segments = matches(schemas.SegmentsAnswer, client.get("/segments").json())
    assert segments["segments"][0]["profile"]["mean_spend"] is not None
    for segment in range(bundle.k):
        matches(schemas.SegmentAnswer, client.get(f"/segments/{segment}").json())
    items = [client.get(f"/segments/{s}/items", params={"min_share": 0}).json() for s in range(bundle.k)]
    assert any(answer["items"] for answer in items)
    for answer in items:
        matches(schemas.SegmentItemsAnswer, answer)
    customer = matches(schemas.CustomerAnswer, client.get(f"/customers/{customer_id}").json())
    assert customer["forecast"] is not None
    category = bundle.vocabs["category"][1]  # 0 is the unknown token
    recommended = client.get(f"/customers/{customer_id}/recommendations", params={"category": category}).json()
    assert matches(schemas.RecommendationsAnswer, recommended)["filters"]["categories"] == [category]
    for query in ("", "?include_embedding=true"):
        for known in (customer_id, None):
            scored = client.post(f"/score{query}", json={"customer_id": known, "events": events}).json()
            assert matches(schemas.ScoreAnswer, scored)["known"] == (known is not None)
            assert ("embedding" in scored) == bool(query)
    matches(schemas.RecommendationsAnswer, client.post("/recommend", json={"events": events, "n": 5}).json())
    seeds = bundle.customers.ids.slice(0, 5).to_pylist()
    for method in ("signature", "nearest_seeds", "centroid", "knn_vote"):
        body = {"seed_ids": [*seeds, "nobody"], "size": 20, "method": method}
        answer = matches(schemas.LookalikeAnswer, client.post("/lookalike?limit=7", json=body).json())
        assert answer["next_offset"] == 7 and answer["unknown_seed_ids"] == ["nobody"]
    last = client.post("/lookalike", json={"segment": 1, "fraction": 0.1}).json()
    assert matches(schemas.LookalikeAnswer, last)["next_offset"] is None


def test_real_errors_match_the_error_body(client, bundle):
    customer_id = bundle.customers.ids[0].as_py()
    for response, status, fields in (
        (client.get("/customers/nobody"), 404, None),
        (client.get("/segments/999"), 404, None),
        (client.get("/segments/x"), 422, ["path.segment_id"]),
        (client.post("/lookalike", json={"segment": 999, "size": 5}), 404, None),
        (client.post("/score", json={"events": [{"ts": [], "event_type": ""}]}), 422,
         ["body.events.0.ts", "body.events.0.event_type"]),
        (client.get(f"/customers/{customer_id}/recommendations", params={"category": "no such"}), 422, None),
        (client.delete("/customers/nobody"), 403, None),  # no token: writes are off
    ):
        assert response.status_code == status, response.text
        body = matches(schemas.ErrorBody, response.json())
        assert [e["field"] for e in body.get("errors") or []] == (fields or []), body


def test_real_writes_and_their_errors_match_their_models(serve, writable):
    victim = pq.read_table(writable / "segments.parquet", columns=["customer_id"])["customer_id"][0].as_py()
    with serve(writable, token=TOKEN, max_body_bytes=1_000) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer wrong"}):
            refused = http.post("/reload", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "Bearer <token>" in matches(schemas.ErrorBody, refused.json())["error"]
        assert matches(schemas.ErasedAnswer, http.delete(f"/customers/{victim}", headers=AUTH).json())
        reloaded = matches(schemas.ReloadAnswer, http.post("/reload", headers=AUTH).json())
        assert reloaded["reloaded"] == reloaded["bundle"] and "erased" not in reloaded
        for response, status in (
            (http.post("/reload", headers=AUTH, json={"bundle": "/"}), 403),  # outside bundle_root
            (http.post("/reload", headers=AUTH, json={"bundle": str(writable / ("x" * 300))}), 422),
            (http.post("/reload", headers=AUTH, json={"bundle": str(writable.parent)}), 409),  # not a bundle
            (http.post("/score", json={"events": [{"ts": 0, "event_type": "x" * 1_000}]}), 413),
        ):
            assert response.status_code == status, response.text
            matches(schemas.ErrorBody, response.json())
