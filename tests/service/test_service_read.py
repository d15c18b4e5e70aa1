"""GET endpoints over a real bundle: health, segments, customers, docs; unknown ids are JSON 404s."""

import json
import math

import pyarrow.parquet as pq
import pytest

from engine.forecast.process import alive_days

K, N_CUSTOMERS = 6, 300  # the session bundle (conftest.py)
HORIZON_DAYS = 30  # its forecast.horizon_days (conftest.py)


def test_health_names_the_bundle_and_counts(client, bundle_dir):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["bundle"] == str(bundle_dir.resolve())
    assert body["format"] == 1 and body["engine_version"] and body["created"]
    assert body["counts"]["customers"] == N_CUSTOMERS and body["counts"]["segments"] == K
    assert body["forecast"] is True


def test_segments_list_profiles_paths_and_tree(client):
    body = client.get("/segments").json()
    segments = body["segments"]
    assert [s["segment"] for s in segments] == list(range(K))
    assert sum(s["size"] for s in segments) == N_CUSTOMERS
    for s in segments:
        assert s["profile"]["size"] == s["size"] and isinstance(s["profile"]["channel_mix"], dict)
        assert [p["level"] for p in s["path"]] == body["levels"] and s["path"][-1]["group"] == s["segment"]
    assert body["tree"]["level"] == 1 and body["tree"]["size"] == N_CUSTOMERS and body["tree"]["children"]


def test_one_segment_and_unknown_segments(client):
    body = client.get("/segments/2").json()
    assert body["segment"] == 2 and body["profile"]["segment"] == 2
    for bad, status in (("99", 404), ("-1", 404), ("abc", 422)):
        response = client.get(f"/segments/{bad}")
        assert response.status_code == status and "error" in response.json()
    assert "0..5" in client.get("/segments/99").json()["error"]


def test_customer_matches_the_bundle_files(client, bundle_dir):
    segments = pq.read_table(bundle_dir / "segments.parquet").slice(7, 1).to_pylist()[0]
    forecast = pq.read_table(bundle_dir / "forecast.parquet").slice(7, 1).to_pylist()[0]
    body = client.get(f"/customers/{segments['customer_id']}").json()
    assert body["segment"] == segments["segment"]
    assert math.isclose(body["similarity"], segments["similarity"], rel_tol=1e-6)
    assert math.isclose(body["distance"], 1 - body["similarity"], rel_tol=1e-9)
    assert body["path"][-1] == {"level": K, "group": segments["segment"]}
    for name in ("expected_purchases", "expected_spend", "p_churn", "p_alive", "lifetime_value"):
        assert math.isclose(body["forecast"][name], forecast[name], rel_tol=1e-6)
    assert body["forecast"]["horizon_days"] == HORIZON_DAYS


def test_customer_forecast_answers_any_horizon_without_retraining(client, bundle_dir):
    """One fitted process per customer: a year and a week ask the same parameters; longer asks more."""
    forecast = pq.read_table(bundle_dir / "forecast.parquet").slice(3, 1).to_pylist()[0]
    manifest = json.loads((bundle_dir / "manifest.json").read_text())["forecast"]
    answers = {h: client.get(f"/customers/{forecast['customer_id']}?horizon_days={h}").json()["forecast"]
               for h in (7, HORIZON_DAYS, 365, 3650)}
    assert answers[HORIZON_DAYS]["expected_purchases"] == pytest.approx(forecast["expected_purchases"], rel=1e-6)
    spend = [answers[h]["expected_spend"] for h in (7, HORIZON_DAYS, 365, 3650)]
    assert spend == sorted(spend) and spend[0] < spend[-1]
    days = alive_days(365, manifest["decay_per_day"], manifest["span_days"])
    assert answers[365]["expected_purchases"] == pytest.approx(forecast["p_alive"] * forecast["rate"] * days, rel=1e-6)
    assert answers[365]["horizon_days"] == 365 and answers[365]["lifetime_value"] == answers[7]["lifetime_value"]
    assert client.get(f"/customers/{forecast['customer_id']}?horizon_days=0").status_code == 422


def test_unknown_customer_is_a_json_404(client):
    response = client.get("/customers/nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["error"]


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/segments", "/score", "/lookalike", "/reload"} <= set(paths)


def test_the_api_docs_load_without_internet(client):
    """/docs and /redoc name only assets the service itself serves (no CDN), and those assets are there."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert sources and all(s.startswith("/") for s in sources), (page, sources)
        for source in sources:
            response = client.get(source)
            assert response.status_code == 200 and len(response.content) > 100, source
    assert client.get("/openapi.json").json()["paths"]["/recommend"]
