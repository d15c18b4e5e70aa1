"""Spherical k-means segments over customer embeddings (FAISS), the auto-k criterion and id matching.

Embeddings are float32 [n_customers, dim], L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np
from scipy.optimize import linear_sum_assignment

log = logging.getLogger(__name__)

_SILHOUETTE_CHUNK = 16384


def _as_matrix(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """float32 C-contiguous copy/view of a 2-D array, or ValueError naming `name`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [n, dim], got shape {x.shape}")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). float32 [n, d] -> float32 [n, d]."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def spherical_kmeans(
    embeddings: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 25,
    nredo: int = 1,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster embeddings into k segments with FAISS spherical k-means.

    embeddings: float32 [n, d], L2-normalised.
    Returns (centroids float32 [k, d] L2-normalised, labels int64 [n]). Segment ids are canonical:
    0 is the largest segment, ties broken by FAISS's centroid order. Deterministic for a seed.
    """
    x = _as_matrix(embeddings)
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"spherical_kmeans: k={k} must be between 1 and the number of customers ({n})")
    km = faiss.Kmeans(d, k, spherical=True, seed=seed, niter=niter, nredo=nredo, verbose=progress)
    km.train(x)
    centroids = _normalise(km.centroids)
    labels, _ = assign(x, centroids)
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))  # descending size, then FAISS order
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    log.info(
        "spherical k-means: n=%d d=%d k=%d, largest segment %d, smallest %d",
        n,
        d,
        k,
        sizes.max(),
        sizes.min(),
    )
    return np.ascontiguousarray(centroids[order]), new_id[labels]


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by inner product.

    embeddings: float32 [n, d]; centroids: float32 [k, d].
    Returns (labels int64 [n], cosine similarity to that centroid float32 [n]).
    """
    x = _as_matrix(embeddings)
    c = _as_matrix(centroids, "centroids")
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"assign: embeddings have dim {x.shape[1]} but centroids have dim {c.shape[1]}")
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    sims, labels = index.search(x, 1)
    return labels[:, 0].astype(np.int64), sims[:, 0].astype(np.float32)


def silhouette_score(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient with cosine distance (1 - cos), in [-1, 1].

    embeddings: float32 [n, d] (normalised here); labels: int [n].
    Uses sum_j (1 - x_i.x_j) = n_c - x_i.(sum of cluster c), so it costs O(n k d), not O(n^2).
    Points in singleton clusters score 0 (the usual convention). Fewer than 2 clusters -> -1.
    """
    x = _normalise(_as_matrix(embeddings)).astype(np.float64)
    _, labels = np.unique(np.asarray(labels), return_inverse=True)
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        return -1.0
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    total = 0.0
    for start in range(0, len(x), _SILHOUETTE_CHUNK):
        xs, ls = x[start : start + _SILHOUETTE_CHUNK], labels[start : start + _SILHOUETTE_CHUNK]
        dist_sum = counts[None, :] - xs @ sums.T  # [chunk, k] summed cosine distances
        rows = np.arange(len(xs))
        own = counts[ls]
        a = dist_sum[rows, ls] / np.maximum(own - 1, 1)
        mean_other = dist_sum / counts[None, :]
        mean_other[rows, ls] = np.inf
        b = mean_other.min(axis=1)
        s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
        total += float(s.sum())
    return total / len(x)


def choose_k(
    embeddings: np.ndarray,
    k_min: int = 2,
    k_max: int = 32,
    seed: int = 0,
    sample_size: int = 5000,
    nredo: int = 3,
) -> tuple[int, dict[int, float]]:
    """Pick the number of segments (`segment.k=auto`): the k in [k_min, k_max] maximising silhouette.

    On a seeded subsample of at most `sample_size` rows, run spherical k-means (nredo restarts) for
    every k in the grid and score the cosine silhouette; ties go to the smaller k.
    embeddings: float32 [n, d], L2-normalised. Returns (k, {k: silhouette}).
    """
    x = _as_matrix(embeddings)
    n = len(x)
    if k_min < 2 or k_max < k_min:
        raise ValueError(f"choose_k: need 2 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    rng = np.random.default_rng(seed)
    if n > sample_size:
        x = x[np.sort(rng.choice(n, size=sample_size, replace=False))]
    k_max = min(k_max, len(x) - 1)
    if k_max < k_min:
        raise ValueError(f"choose_k: {len(x)} customers are too few for k_min={k_min}")
    scores: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        _, labels = spherical_kmeans(x, k, seed=seed, nredo=nredo)
        scores[k] = silhouette_score(x, labels)
    best = max(scores, key=lambda k: (scores[k], -k))
    log.info(
        "choose_k: silhouette over k=%d..%d on %d customers picks k=%d (%.3f)",
        k_min,
        k_max,
        len(x),
        best,
        scores[best],
    )
    return best, scores


def match_to_previous(new_centroids: np.ndarray, old_centroids: np.ndarray) -> np.ndarray:
    """Map new segment ids to old ones so ids stay stable across retraining.

    Hungarian matching (maximum total cosine similarity) between new float32 [k_new, d] and old
    float32 [k_old, d] centroids. Returns int64 [k_new]: mapping[new_id] = old id where matched;
    new segments left over when k_new > k_old get fresh ids k_old, k_old + 1, ... in new-id order.
    Apply with `mapping[labels]`. When k_new < k_old the ids are unique but not contiguous.
    """
    new = _normalise(_as_matrix(new_centroids, "new_centroids"))
    old = _normalise(_as_matrix(old_centroids, "old_centroids"))
    if new.shape[1] != old.shape[1]:
        raise ValueError(f"match_to_previous: new centroids have dim {new.shape[1]}, old have {old.shape[1]}")
    rows, cols = linear_sum_assignment(new @ old.T, maximize=True)
    mapping = np.full(len(new), -1, dtype=np.int64)
    mapping[rows] = cols
    fresh = mapping < 0
    mapping[fresh] = len(old) + np.arange(fresh.sum())
    return mapping


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Adjusted Rand index between two labelings of the same n items (1 = identical partitions).

    labels_a, labels_b: int or str [n]; label values need not match, only the partitions.
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"adjusted_rand_index: need two 1-D labelings of equal length, got {a.shape} and {b.shape}"
        )
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    na, nb = a.max(initial=-1) + 1, b.max(initial=-1) + 1
    table = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)

    def pairs(c: np.ndarray) -> float:
        return float((c * (c - 1) / 2).sum())

    index = pairs(table)
    pairs_a, pairs_b = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    total = len(a) * (len(a) - 1) / 2
    expected = pairs_a * pairs_b / total if total else 0.0
    maximum = (pairs_a + pairs_b) / 2
    if maximum == expected:  # both partitions trivial (all-in-one or all-singletons)
        return 1.0
    return (index - expected) / (maximum - expected)
