"""Bundle.load and erasure below the HTTP layer: clear errors for broken bundles, crash recovery, and index
renumbering for every index kind."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.bundle import Bundle, BundleError, UnknownCustomer
from engine.bundle.bundle import append_tombstone
from engine.bundle.customers import INDEX, index_without, write_files
from engine.index.index import build_index


@pytest.mark.parametrize("name", ["segments.parquet", "index.faiss", "centroids.npy", "store", "model.pt"])
def test_a_missing_file_names_the_bundle_and_the_file(writable, name):
    path = writable / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(BundleError, match=f"{writable}.*{name}"):
        Bundle.load(writable)


@pytest.mark.parametrize("name", ["embeddings.parquet", "index.faiss", "manifest.json", "hierarchy.json"])
def test_a_corrupt_file_names_the_bundle_and_the_file(writable, name):
    (writable / name).write_bytes(b"\x00garbage")
    with pytest.raises(BundleError, match=f"{writable}.*{name}"):
        Bundle.load(writable)


def test_files_that_disagree_are_refused(writable):
    segments = pq.read_table(writable / "segments.parquet")
    pq.write_table(segments.slice(1), writable / "segments.parquet")
    with pytest.raises(BundleError, match="segments.parquet"):
        Bundle.load(writable)


def test_erase_unknown_is_a_key_error_and_changes_nothing(writable):
    bundle = Bundle.load(writable)
    with pytest.raises(UnknownCustomer, match="nobody"):
        bundle.erase("nobody")
    assert not (writable / "tombstones.jsonl").exists()


def test_load_finishes_an_erasure_interrupted_after_the_tombstone(writable):
    before = Bundle.load(writable).customers
    victim = before.ids[42].as_py()
    append_tombstone(writable, victim)  # the crash: nothing else was rewritten
    after = Bundle.load(writable).customers
    assert victim not in after.row and after.n == before.n - 1
    assert np.array_equal(after.embeddings, np.delete(before.embeddings, 42, axis=0))
    assert pq.read_table(writable / "embeddings.parquet").num_rows == before.n - 1
    assert Bundle.load(writable).customers.n == before.n - 1  # idempotent


def test_load_finishes_an_erasure_interrupted_after_the_index(writable):
    bundle = Bundle.load(writable)
    before = bundle.customers
    victim = before.ids[7].as_py()
    append_tombstone(writable, victim)
    write_files(writable, before.without(np.array([7])), {INDEX})  # the crash: only the index was rewritten
    after = Bundle.load(writable).customers
    assert victim not in after.row and after.index.ntotal == after.n == before.n - 1
    _, ids = after.index.search(after.embeddings[:50], 1)
    assert np.array_equal(ids[:, 0], np.arange(50))


def test_a_torn_tombstone_line_is_skipped_and_later_ones_stand(writable):
    bundle = Bundle.load(writable)
    (writable / "tombstones.jsonl").write_text('{"customer_id": "c00')
    victim = bundle.customers.ids[0].as_py()
    bundle.erase(victim)
    lines = (writable / "tombstones.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["customer_id"] == victim
    assert victim not in Bundle.load(writable).customers.row


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_without_renumbers_every_kind(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = build_index(x, np.arange(400), kind=kind, **({"nlist": 8, "nprobe": 8} if kind == "ivf" else {}))
    removed = np.array([0, 57, 58, 399])
    smaller = index_without(index, removed)
    kept = np.delete(x, removed, axis=0)
    assert smaller.ntotal == 396 and index.ntotal == 400  # the original is left alone
    _, ids = smaller.search(kept, 1)
    assert np.mean(ids[:, 0] == np.arange(396)) > (0.99 if kind == "hnsw" else 0.999)


def test_erasure_refuses_a_directory_replaced_since_loading(writable):
    bundle = Bundle.load(writable)
    shutil.copytree(writable, writable.with_name("fresh"))
    shutil.rmtree(writable)
    writable.with_name("fresh").rename(writable)  # what train.py's atomic rename does
    with pytest.raises(BundleError, match="replaced"):
        bundle.erase(bundle.customers.ids[0].as_py())
    assert not (writable / "tombstones.jsonl").exists()
