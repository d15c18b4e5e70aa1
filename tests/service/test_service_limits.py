"""Resources and paths bounded: reloaded-away bundles are freed, large bodies refused before parsing, reloads
only from under the bundle root, the write token never from the command line."""

import gc
import importlib.util
import resource
import shutil
import weakref
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf

from engine.service import create_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_fifty_reloads_free_every_old_bundle_and_hold_memory_flat(writable):
    app = create_app(writable, token=TOKEN)
    service = app.state.service
    gone = []
    with service.write_lock:
        for i in range(50):
            gone.append(weakref.ref(service.bundle))
            service.bundle = service.load(writable)
            if i == 9:
                gc.collect()
                rss_after_10 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    assert sum(ref() is not None for ref in gone) == 0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_after_10
    assert grown_kb < 40 * 1024  # the leak held ~5 MB per reload: 200 MB over these 40


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(serve, writable):
    with serve(writable, max_body_bytes=10_000) as server, httpx.Client(base_url=server.url) as http:
        response = http.post("/lookalike", json={"seed_ids": ["x" * 50] * 1000})  # ~55 kB
        assert response.status_code == 413 and "10,000 bytes" in response.json()["error"]

        def chunks():
            for _ in range(20):
                yield b" " * 1000

        assert http.post("/lookalike", content=chunks()).status_code == 413  # streamed, no Content-Length
        small = http.post("/lookalike", json={"seed_ids": ["nobody"], "size": 5})
        assert small.status_code == 422 and "none of the 1 ids" in small.json()["error"]  # parsed as usual
        assert http.get("/health").status_code == 200
    with pytest.raises(ValueError, match="max_body_bytes=0"):
        create_app(writable, max_body_bytes=0)


def test_unknown_seed_ids_are_counted_and_only_the_first_echoed(client, bundle_dir):
    import pyarrow.parquet as pq

    known = pq.read_table(bundle_dir / "segments.parquet", columns=["customer_id"])["customer_id"][0].as_py()
    body = client.post("/lookalike", json={"seed_ids": [known] + [f"typo-{i}" for i in range(5000)],
                                           "size": 5}).json()
    assert body["unknown_seed_count"] == 5000 and len(body["unknown_seed_ids"]) == 100
    assert body["unknown_seed_ids"][0] == "typo-0"


def test_reload_takes_bundles_under_the_root_only(serve, writable, tmp_path):
    other = shutil.copytree(writable, tmp_path / "other")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    shutil.copytree(writable, outside)
    try:
        (tmp_path / "link").symlink_to(outside)
        with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
            assert http.post("/reload", headers=AUTH, json={"bundle": str(other)}).status_code == 200
            for path in (str(outside), str(tmp_path / "link"), str(other / ".." / ".." / outside.name)):
                response = http.post("/reload", headers=AUTH, json={"bundle": path})
                assert response.status_code == 403 and "bundle_root" in response.json()["error"], path
            long = http.post("/reload", headers=AUTH, json={"bundle": str(tmp_path / ("a" * 300))})
            assert long.status_code == 422 and "255" in long.json()["error"]
            assert http.get("/health").json()["bundle"] == str(other.resolve())
        with serve(writable, token=TOKEN, bundle_root=tmp_path.parent) as server:
            wide = httpx.post(f"{server.url}/reload", headers=AUTH, json={"bundle": str(outside)})
            assert wide.status_code == 200
    finally:
        shutil.rmtree(outside)


def test_the_token_comes_from_the_environment_or_a_file_never_the_command_line(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("serve", Path(__file__).resolve().parents[2] / "serve.py")
    serve_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_py)
    write_token = serve_py.write_token
    cfg = OmegaConf.create({"token": None, "token_file": None})
    monkeypatch.delenv("SEGMENT_ENGINE_TOKEN", raising=False)
    assert write_token(cfg) is None
    monkeypatch.setenv("SEGMENT_ENGINE_TOKEN", "from-env")
    assert write_token(cfg) == "from-env"
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert write_token(OmegaConf.create({"token": None, "token_file": str(secret)})) == "from-file"
    with pytest.raises(ValueError, match="process list"):
        write_token(OmegaConf.create({"token": "abc", "token_file": None}))
    (tmp_path / "empty").write_text("")
    for path, message in ((tmp_path / "empty", "is empty"), (tmp_path / "missing", "cannot read")):
        with pytest.raises(ValueError, match=message):
            write_token(OmegaConf.create({"token": None, "token_file": str(path)}))
