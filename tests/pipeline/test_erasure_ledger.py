"""One erasure ledger every run honours: retrains into new directories, stage=embed and stage=segment, an
erasure answered while a bundle is built, a restart; the erased id is in no artifact, work directory or
access-log line."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import httpx

from engine import pipeline
from engine.bundle.ledger import LEDGER, Ledger
from engine.bundle.writer import BundleWriter, read_embeddings
from engine.service import create_app
from tests.conftest import run
from tests.service.conftest import Server

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def files_naming(directory: Path, customer_id: str) -> list[str]:
    """Every file under ``directory`` whose bytes hold the id, the erasure records themselves excepted."""
    needle = customer_id.encode()
    return [str(p) for p in directory.rglob("*") if p.is_file() and p.name not in ("tombstones.jsonl", LEDGER)
            and needle in p.read_bytes()]


def victims(bundle: Path, n: int = 2) -> list[str]:
    ids = read_embeddings(bundle / "embeddings.parquet")[0].to_pylist()
    chosen = [ids[5], ids[11]][:n]
    assert not [i for i in ids if i not in chosen and any(i.startswith(c) for c in chosen)]  # the grep is exact
    return chosen


def test_every_later_stage_into_any_directory_leaves_the_erased_out(bundle, tiny_log, tmp_path):
    served = Path(shutil.copytree(bundle, tmp_path / "bundles" / "2026-12-01"))
    by_service, by_ledger_only = victims(served)
    create_app(served, open_writes=True).state.service.erase(by_service)  # DELETE /customers/{id}
    Ledger.beside(served).append(by_ledger_only)  # erased through another copy of the service
    assert files_naming(served, by_service) == [] and files_naming(served, by_ledger_only)

    root = tmp_path / "bundles"
    retrained = run(pipeline.run_all, [f"data.path={tiny_log}", f"out_dir={root / 'retrained'}"])
    embedded = run(pipeline.run_embed, ["stage=embed", f"bundle={served}", f"data.path={tiny_log}",
                                        f"out_dir={root / 'embedded'}"])
    segmented = run(pipeline.run_segment, ["stage=segment", f"bundle={served}", f"out_dir={root / 'segmented'}"])
    for victim in (by_service, by_ledger_only):
        for directory in (retrained, embedded, segmented, served, root / "retrained.work", root / "embedded.work"):
            assert files_naming(directory, victim) == [], (victim, directory)
    assert not (root / "retrained.work" / "embed-parts").exists()  # merged, then removed
    with Server(segmented) as server, httpx.Client(base_url=server.url) as http:  # a fresh start
        for victim in (by_service, by_ledger_only):
            assert http.get(f"/customers/{victim}").status_code == 404


def test_an_erasure_answered_while_a_bundle_is_built_reaches_the_new_bundle(bundle, tmp_path):
    served = Path(shutil.copytree(bundle, tmp_path / "bundles" / "current"))
    victim = victims(served, 1)[0]
    with Server(served, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        with BundleWriter(served, base=served, ledger=Ledger.beside(served)) as staged:  # train.py's new bundle
            assert (staged.path / "segments.parquet").exists()  # it read the customer before the erasure
            assert http.delete(f"/customers/{victim}", headers=AUTH).status_code == 200
        assert files_naming(served, victim) == []  # applied under the ledger's lock before the swap
        assert http.get(f"/customers/{victim}").status_code == 404  # the old one in memory lost it too
        assert http.post("/reload", headers=AUTH).status_code == 200
        assert http.get(f"/customers/{victim}").status_code == 404
        other = victims(served, 2)[1]  # the directory was replaced under the running service: it loads the new one
        with BundleWriter(served, base=served, ledger=Ledger.beside(served)):
            pass
        assert http.delete(f"/customers/{other}", headers=AUTH).status_code == 200
        assert http.get(f"/customers/{other}").status_code == 404 and files_naming(served, other) == []


def test_an_append_waits_while_a_bundle_is_swapped_in(tmp_path):
    ledger = Ledger(tmp_path / LEDGER)
    done = threading.Event()
    with ledger.locked():
        writer = threading.Thread(target=lambda: (ledger.append("late"), done.set()))
        writer.start()
        time.sleep(0.3)
        assert not done.is_set() and ledger.read() == []
    writer.join(5)
    assert done.is_set() and ledger.read() == ["late"]


def test_the_access_log_names_no_customer(bundle, tmp_path):
    create_app(Path(shutil.copytree(bundle, tmp_path / "b")))
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/customers/C000042/recommendations?n=3", "1.1", 200), None)
    for f in logging.getLogger("uvicorn.access").filters:
        f.filter(record)
    assert "C000042" not in record.getMessage() and "/customers/{id}/recommendations" in record.getMessage()
