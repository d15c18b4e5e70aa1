"""FAISS inner-product index: exact flat search, IVF/HNSW recall, persistence, erasure."""

import numpy as np
import pytest

from engine.index.index import (
    build_index,
    index_kind,
    load_index,
    rebuild_without,
    remove_ids,
    save_index,
    search,
)


def clustered(n: int, d: int = 32, n_clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at(k: int, got: np.ndarray, exact: np.ndarray) -> float:
    return np.mean([len(np.intersect1d(g, e)) / k for g, e in zip(got, exact, strict=True)])


def test_flat_search_is_exact_with_our_ids():
    x = clustered(2000, seed=1)
    ids = np.arange(2000, dtype=np.int64) + 1000
    index = build_index(x, ids, kind="flat")
    queries = clustered(20, seed=2)
    scores, got = search(index, queries, 10)
    sims = queries @ x.T
    expected = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_array_equal(got, ids[expected])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, axis=1), atol=1e-5)
    assert scores.dtype == np.float32 and got.dtype == np.int64
    assert index_kind(index) == "flat"


def test_ivf_recall_at_10_against_flat():
    x = clustered(20000)
    ids = np.arange(20000, dtype=np.int64)
    queries = clustered(200, seed=3)
    _, exact = search(build_index(x, ids, kind="flat"), queries, 10)
    ivf = build_index(x, ids, kind="ivf")  # defaults: nlist = min(4 sqrt(n), n / 39) = 512, nprobe 16
    assert index_kind(ivf) == "ivf" and ivf.nlist == 512 and ivf.nprobe == 16
    _, got = search(ivf, queries, 10)
    assert recall_at(10, got, exact) >= 0.9


def test_hnsw_recall_at_10_against_flat():
    x = clustered(3000, seed=4)
    ids = np.arange(3000, dtype=np.int64)
    queries = clustered(100, seed=5)
    _, exact = search(build_index(x, ids), queries, 10)
    hnsw = build_index(x, ids, kind="hnsw", hnsw_m=16)
    assert index_kind(hnsw) == "hnsw"
    _, got = search(hnsw, queries, 10)
    assert recall_at(10, got, exact) >= 0.9


def test_unknown_kind_and_bad_queries_are_rejected():
    x = clustered(100)
    with pytest.raises(ValueError, match="'annoy' is unknown; expected one of flat, ivf, hnsw"):
        build_index(x, np.arange(100), kind="annoy")
    with pytest.raises(ValueError, match="100 ids for 99 embeddings"):
        build_index(x[:99], np.arange(100))
    index = build_index(x, np.arange(100))
    with pytest.raises(ValueError, match="dim 8 but the index has dim 32"):
        search(index, np.zeros((1, 8), np.float32), 5)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_roundtrip(tmp_path, kind):
    x = clustered(1000, seed=6)
    index = build_index(x, np.arange(1000) * 3, kind=kind, nlist=8)
    path = tmp_path / f"{kind}.faiss"
    save_index(index, path)
    assert path.is_file() and not (tmp_path / f"{kind}.faiss.tmp").exists()
    loaded = load_index(path)
    assert loaded.ntotal == 1000 and index_kind(loaded) == kind
    before, after = search(index, x[:5], 7), search(loaded, x[:5], 7)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_index(tmp_path / "missing.faiss")


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_remove_ids_makes_them_unreachable(kind):
    x = clustered(1000, seed=7)
    ids = np.arange(1000, dtype=np.int64)
    index = build_index(x, ids, kind=kind, nlist=8, nprobe=8)
    gone = np.array([3, 10, 500, 999])
    assert remove_ids(index, gone) == 4
    assert index.ntotal == 996
    _, got = search(index, x[gone], 50)
    assert not np.isin(got, gone).any()
    assert remove_ids(index, gone) == 0


def test_hnsw_cannot_remove_but_rebuilds_without():
    x = clustered(800, seed=8)
    index = build_index(x, np.arange(800), kind="hnsw", hnsw_m=16)
    gone = np.array([0, 1, 2, 400])
    assert remove_ids(index, gone) == -1
    assert index.ntotal == 800
    rebuilt = rebuild_without(index, gone)
    assert rebuilt.ntotal == 796 and index_kind(rebuilt) == "hnsw"
    _, got = search(rebuilt, x[gone], 20)
    assert not np.isin(got, gone).any()
    _, kept = search(rebuilt, x[[5, 6]], 1)  # the rest are still found (themselves, nearest)
    np.testing.assert_array_equal(kept[:, 0], [5, 6])
