"""Size-weighted Ward hierarchy over segment centroids."""

import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import is_valid_linkage, linkage

from engine.segment.hierarchy import Hierarchy, build_hierarchy, default_levels, level_columns


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_centroids(k: int, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return unit(rng.normal(size=(k, d))), rng.integers(10, 500, size=k)


def test_default_levels_are_powers_of_four_below_k_then_k():
    assert default_levels(16) == [4, 16]
    assert default_levels(64) == [4, 16, 64]
    assert default_levels(20) == [4, 16, 20]
    assert default_levels(6) == [4, 6]
    assert default_levels(3) == [3]


def test_super_clusters_share_a_level_two_group():
    rng = np.random.default_rng(1)
    supers = unit(np.array([[1.0] + [0.0] * 7, [-1.0] + [0.0] * 7]))
    centroids = unit(np.repeat(supers, 3, axis=0) + 0.35 * rng.normal(size=(6, 8)))
    sizes = np.array([300, 120, 50, 400, 80, 60])
    h = build_hierarchy(centroids, sizes, levels=[2, 6])
    groups = h.parents[2]
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1
    assert groups[0] != groups[3]
    assert groups[0] == 0, "group ids are numbered by their lowest segment"


def test_levels_nest_and_cover_every_group():
    centroids, sizes = random_centroids(16)
    h = build_hierarchy(centroids, sizes, levels=[2, 4, 8])
    assert h.levels == [2, 4, 8, 16]
    for level in (2, 4, 8):
        assert h.parents[level].dtype == np.int64
        np.testing.assert_array_equal(np.unique(h.parents[level]), np.arange(level))
    for fine, coarse in [(8, 4), (4, 2)]:  # every fine group sits inside exactly one coarse group
        pairs = np.unique(np.stack([h.parents[fine], h.parents[coarse]], axis=1), axis=0)
        assert len(pairs) == fine
    assert h.path(5) == [int(h.parents[2][5]), int(h.parents[4][5]), int(h.parents[8][5]), 5]
    with pytest.raises(ValueError, match="out of range"):
        h.path(16)


def test_equal_sizes_reproduce_scipy_ward_and_sizes_change_the_merges():
    centroids, _ = random_centroids(12, seed=2)
    h = build_hierarchy(centroids, np.full(12, 100))
    assert is_valid_linkage(h.linkage)
    reference = linkage(centroids.astype(np.float64), method="ward")
    np.testing.assert_allclose(h.linkage[:, 2], reference[:, 2], rtol=1e-6)
    np.testing.assert_array_equal(h.linkage[:, 3], reference[:, 3])

    points = np.array([[0.0], [1.0], [2.2]])  # equal sizes: 0 and 1 merge first (closest)
    assert sorted(build_hierarchy(points, np.array([1, 1, 1])).linkage[0, :2]) == [0, 1]
    # a big segment 0 makes absorbing it costly, so the two small ones merge first
    assert sorted(build_hierarchy(points, np.array([1000, 1, 1])).linkage[0, :2]) == [1, 2]


def test_json_roundtrip_tree_and_level_columns():
    centroids, sizes = random_centroids(16, seed=3)
    h = build_hierarchy(centroids, sizes)
    back = Hierarchy.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.levels == h.levels == [4, 16]
    np.testing.assert_array_equal(back.parents[4], h.parents[4])
    np.testing.assert_array_equal(back.linkage, h.linkage)
    assert back.path(7) == h.path(7)

    tree = back.tree()
    assert tree["level"] == 1 and tree["size"] == sizes.sum()
    assert [child["id"] for child in tree["children"]] == [0, 1, 2, 3]
    for group in tree["children"]:
        leaves = [leaf["id"] for leaf in group["children"]]
        np.testing.assert_array_equal(sorted(leaves), np.flatnonzero(h.parents[4] == group["id"]))
        assert group["size"] == sizes[leaves].sum()
        assert all(leaf["level"] == 16 and leaf["children"] == [] for leaf in group["children"])

    labels = np.array([0, 15, 3, 3])
    columns = level_columns(labels, h)
    assert list(columns) == ["level_4"]
    np.testing.assert_array_equal(columns["level_4"], h.parents[4][labels])
