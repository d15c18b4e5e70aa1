"""Writes: token-guarded erasure that survives a restart everywhere it could hide, and reloads that never
fail a request in flight."""

import json
import shutil
import threading
import time

import faiss
import httpx
import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ids_in(path) -> list[str]:
    return pq.read_table(path, columns=["customer_id"])["customer_id"].to_pylist()


def test_writes_need_the_token_reads_do_not(serve, writable):
    victim = ids_in(writable / "segments.parquet")[3]
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = http.delete(f"/customers/{victim}", headers=headers)
            assert response.status_code == 401 and "Bearer" in response.json()["error"]
            assert http.post("/reload", headers=headers).status_code == 401
        assert http.get(f"/customers/{victim}").status_code == 200
        assert http.delete(f"/customers/{victim}", headers=AUTH).json() == {"erased": victim}
        assert http.delete(f"/customers/{victim}", headers=AUTH).status_code == 404
        assert http.delete("/customers/nobody", headers=AUTH).status_code == 404
        assert http.post("/reload", headers=AUTH).status_code == 200


def test_erasure_survives_a_restart_in_every_file_and_answer(serve, writable):
    ids = ids_in(writable / "segments.parquet")
    victim, neighbour = ids[10], ids[11]
    segment = pq.read_table(writable / "segments.parquet")["segment"][10].as_py()
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        assert http.delete(f"/customers/{victim}", headers=AUTH).status_code == 200
        assert http.get(f"/customers/{victim}").status_code == 404
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        response = http.get(f"/customers/{victim}")
        assert response.status_code == 404 and victim in response.json()["error"]
        assert http.get(f"/customers/{neighbour}").status_code == 200
        assert http.get("/health").json()["counts"]["customers"] == len(ids) - 1
        for request in ({"segment": segment, "fraction": 1.0}, {"seed_ids": [neighbour], "fraction": 1.0}):
            audience = http.post("/lookalike", json=request).json()["audience"]
            assert victim not in {a["customer_id"] for a in audience}
        assert http.post("/lookalike", json={"seed_ids": [victim], "size": 5}).status_code == 422
        sizes = {s["segment"]: s["size"] for s in http.get("/segments").json()["segments"]}
        assert sum(sizes.values()) == len(ids) - 1
    for name in ("embeddings.parquet", "segments.parquet", "forecast.parquet"):
        assert ids_in(writable / name) == ids[:10] + ids[11:], name
    assert (
        feather.read_table(writable / "store" / "customers.arrow")["customer_id"].to_pylist()
        == ids[:10] + ids[11:]
    )
    index = faiss.read_index(str(writable / "index.faiss"))
    assert index.ntotal == len(ids) - 1
    assert np.array_equal(np.sort(faiss.vector_to_array(index.id_map)), np.arange(len(ids) - 1))
    manifest = json.loads((writable / "manifest.json").read_text())
    assert manifest["counts"]["customers"] == len(ids) - 1
    tombstones = [json.loads(line) for line in (writable / "tombstones.jsonl").read_text().splitlines()]
    assert [t["customer_id"] for t in tombstones] == [victim]


def test_reload_under_load_fails_no_request(serve, writable, tmp_path):
    other = shutil.copytree(writable, tmp_path / "other")
    ids = ids_in(writable / "segments.parquet")[:20]
    failures, served, stop = [], [], threading.Event()

    def hammer(start: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = start
            while not stop.is_set():
                response = http.get(f"/customers/{ids[i % len(ids)]}")
                served.append(1)
                if response.status_code != 200:
                    failures.append(response.status_code)
                i += 1

    with serve(writable, token=TOKEN) as server:
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for path, serving in (
                (other, other),
                (None, other),
                (writable, writable),
            ):  # None: the current one
                time.sleep(0.2)
                body = http.post("/reload", headers=AUTH, json={"bundle": str(path)} if path else None).json()
                assert body["reloaded"] == str(serving.resolve())
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
    assert not failures and len(served) > 20


def test_a_failed_reload_keeps_serving_the_old_bundle(serve, writable, tmp_path):
    broken = shutil.copytree(writable, tmp_path / "broken")
    (broken / "segments.parquet").unlink()
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        for path in (str(broken), str(tmp_path / "missing")):
            response = http.post("/reload", headers=AUTH, json={"bundle": path})
            assert response.status_code == 409 and path in response.json()["error"]
        assert (
            "segments.parquet"
            in http.post("/reload", headers=AUTH, json={"bundle": str(broken)}).json()["error"]
        )
        assert http.post("/reload", headers=AUTH, json={"bundle": 3}).status_code == 422
        assert http.get("/health").json()["bundle"] == str(writable.resolve())


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_reload_of_a_model_file_that_would_run_code_is_refused_without_running_it(
    serve, writable, tmp_path
):
    import torch

    crafted = shutil.copytree(writable, tmp_path / "crafted")
    marker = tmp_path / "MARKER"
    payload = torch.load(crafted / "model.pt", weights_only=True)
    payload["extra"]["x"] = _RunsCode(marker)
    torch.save(payload, crafted / "model.pt")
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        response = http.post("/reload", headers=AUTH, json={"bundle": str(crafted)})
        assert response.status_code == 409
        assert "model.pt" in response.json()["error"] and "not a plain model file" in response.json()["error"]
        assert http.get("/health").json()["bundle"] == str(writable.resolve())
    assert not marker.exists()


def test_without_a_token_writes_are_off_unless_open_writes(serve, writable):
    victim = ids_in(writable / "segments.parquet")[3]
    with serve(writable) as server, httpx.Client(base_url=server.url) as http:
        for response in (http.delete(f"/customers/{victim}"), http.post("/reload")):
            assert response.status_code == 403 and "open_writes=true" in response.json()["error"]
        assert http.get(f"/customers/{victim}").status_code == 200
    with serve(writable, open_writes=True) as server, httpx.Client(base_url=server.url) as http:
        assert http.delete(f"/customers/{victim}").json() == {"erased": victim}
        assert http.post("/reload").status_code == 200
