"""Faults that must not lose a bundle or serve an erased customer: a full disk during an erasure and at
start-up, a crash between the two renames of a bundle swap, staging directories left by killed runs."""

import errno
import os
import shutil
import subprocess
import sys

import httpx
import pyarrow.parquet as pq
import pytest

from engine.bundle import Bundle
from engine.bundle import bundle as bundle_module
from engine.bundle import customers as customers_module
from engine.bundle import ledger as ledger_module
from engine.bundle.writer import BundleWriter, clean_stale, replace_dir

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ids_in(directory) -> list[str]:
    return pq.read_table(directory / "segments.parquet", columns=["customer_id"])["customer_id"].to_pylist()


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_answers_507_and_the_customer_is_never_served_again(serve, writable, monkeypatch):
    first, second = ids_in(writable)[3:5]
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        monkeypatch.setattr(bundle_module, "write_files", disk_full)  # the tombstone fits, the files do not
        response = http.delete(f"/customers/{first}", headers=AUTH)
        assert response.status_code == 507 and "pending" in response.json()["error"]
        assert http.get(f"/customers/{first}").status_code == 404
        monkeypatch.setattr(ledger_module, "append_erasure", disk_full)  # now nothing can be written at all
        monkeypatch.setattr(customers_module, "write_files", disk_full)
        response = http.delete(f"/customers/{second}", headers=AUTH)
        assert response.status_code == 507 and "ledger" in response.json()["error"]
        assert http.post("/reload", headers=AUTH).status_code == 200  # starts over a disk that is still full
        for victim in (first, second):
            assert http.get(f"/customers/{victim}").status_code == 404
            assert victim not in [c["customer_id"] for c in http.post(
                "/lookalike", json={"segment": 0, "fraction": 0.9}).json()["audience"]]
        assert first in ids_in(writable)  # on disk still: pending
        monkeypatch.undo()  # space freed
        assert http.post("/reload", headers=AUTH).status_code == 200
        for victim in (first, second):
            assert http.get(f"/customers/{victim}").status_code == 404 and victim not in ids_in(writable)


def test_the_service_starts_with_an_erasure_it_cannot_write_yet(writable, monkeypatch):
    victim = ids_in(writable)[7]
    ledger_module.Ledger.beside(writable).append(victim)
    monkeypatch.setattr(customers_module, "write_files", disk_full)
    bundle = Bundle.load(writable, erased=ledger_module.Ledger.beside(writable).read())
    assert victim not in bundle.customers.row and victim in ids_in(writable)


def test_a_crash_between_the_two_renames_of_a_swap_loses_no_bundle(writable, tmp_path):
    held = ids_in(writable)
    aside = writable.with_name(f".{writable.name}.old")
    os.replace(writable, aside)  # replace_dir's first rename; the crash comes before the second
    assert Bundle.load(writable).customers.n == len(held)  # the next load finds the copy and moves it back
    assert writable.exists() and not aside.exists()
    os.replace(writable, aside)
    with BundleWriter(writable, base=writable):  # the next run over it: restores first, then swaps its own in
        pass
    assert ids_in(writable) == held and not aside.exists()
    staged = tmp_path / "staged"
    shutil.copytree(writable, staged)
    os.replace(writable, aside)
    replace_dir(staged, writable)  # the good copy aside is never deleted before it is restored
    assert ids_in(writable) == held


def test_staging_directories_of_killed_runs_are_cleaned(writable):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = writable.with_name(f".{writable.name}.tmp-{dead}-abcd1234")
    live = writable.with_name(f".{writable.name}.tmp-{os.getpid()}-efgh5678")
    old_style = writable.with_name(f".{writable.name}.tmp-xyz")
    for path in (stale, live, old_style):
        path.mkdir()
    os.utime(old_style, (0, 0))
    assert sorted(clean_stale(writable)) == sorted([stale, old_style])
    assert live.exists()
    shutil.rmtree(live)


def test_a_swap_aside_without_a_manifest_is_not_taken_for_a_bundle(writable):
    aside = writable.with_name(f".{writable.name}.old")
    shutil.copytree(writable, aside)
    (aside / "manifest.json").unlink()
    shutil.rmtree(writable)
    with pytest.raises(Exception, match="no such bundle directory"):
        Bundle.load(writable)
    assert aside.exists()  # the half copy stays where it is for a person to look at


def test_a_reload_checks_the_manifest_before_it_opens_anything_else(serve, writable, tmp_path):
    import json

    for name, manifest, message in (("newer", {"format": 99, "files": {}}, "bundle format 99"),
                                    ("foreign", {"hello": 1}, "not a bundle manifest"),
                                    ("list", [1, 2], "not a bundle manifest")):
        other = shutil.copytree(writable, tmp_path / name)
        (other / "manifest.json").write_text(json.dumps(manifest))
        (other / "model.pt").write_bytes(b"not read")
        with pytest.raises(Exception, match=message):
            Bundle.load(other)
    with serve(writable, token=TOKEN) as server, httpx.Client(base_url=server.url) as http:
        response = http.post("/reload", headers=AUTH, json={"bundle": str(tmp_path / "newer")})
        assert response.status_code == 409 and "bundle format 99" in response.json()["error"]


def test_faiss_reporting_a_full_disk_is_a_full_disk_and_leaves_no_partial_file(writable, monkeypatch):
    """faiss.write_index raises RuntimeError ("... No space left on device"), not OSError: found on a real
    30 MB tmpfs filled up, where a reload answered 500."""
    import faiss

    def full(index, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError(f"Error: write error in {path}: 4014 != 98072 (No space left on device)")

    victim = ids_in(writable)[2]
    ledger_module.Ledger.beside(writable).append(victim)
    monkeypatch.setattr(faiss, "write_index", full)
    bundle = Bundle.load(writable, erased=[victim])  # the start-up over a full disk
    assert victim not in bundle.customers.row
    assert not list(writable.glob(".*.tmp"))
    with pytest.raises(OSError) as err:
        customers_module.replace_file(writable / "index.faiss", lambda tmp: faiss.write_index(None, str(tmp)))
    assert err.value.errno == errno.ENOSPC
