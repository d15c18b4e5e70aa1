"""Coarser segment levels: size-weighted Ward agglomeration over the k segment centroids.

Ward here treats each segment as `size` customers sitting at its centroid, so a merge costs the increase
in within-group sum of squares over customers: w_a w_b / (w_a + w_b) * ||c_a - c_b||^2 (Euclidean on the
unit-norm centroids, i.e. 2 - 2 cos). scipy's `linkage` takes no weights, so the k - 1 merges are done
here (a loop over segments, not customers) and written as a scipy linkage matrix for the dendrogram.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Hierarchy:
    """Segment tree. levels: ascending group counts, last == k. parents[L]: int64 [k], each leaf
    segment's group id (0..L-1) at coarser level L. linkage: float64 [k - 1, 4] scipy linkage matrix.
    sizes: int64 [k] customers per leaf segment (optional, shown in `tree()`)."""

    levels: list[int]
    parents: dict[int, np.ndarray]
    linkage: np.ndarray
    sizes: np.ndarray | None = field(default=None)

    @property
    def k(self) -> int:
        return self.levels[-1]

    def path(self, segment: int) -> list[int]:
        """Group ids from the coarsest level down to the leaf segment itself."""
        if not 0 <= segment < self.k:
            raise ValueError(f"hierarchy: segment {segment} is out of range 0..{self.k - 1}")
        return [int(self.parents[level][segment]) for level in self.levels[:-1]] + [int(segment)]

    def to_dict(self) -> dict:
        """JSON-serialisable form (for the bundle manifest)."""
        return {
            "levels": [int(level) for level in self.levels],
            "parents": {str(level): self.parents[level].tolist() for level in self.levels[:-1]},
            "linkage": self.linkage.tolist(),
            "sizes": None if self.sizes is None else self.sizes.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Hierarchy:
        sizes = data.get("sizes")
        return cls(
            levels=[int(level) for level in data["levels"]],
            parents={int(level): np.asarray(ids, dtype=np.int64) for level, ids in data["parents"].items()},
            linkage=np.asarray(data["linkage"], dtype=np.float64).reshape(-1, 4),
            sizes=None if sizes is None else np.asarray(sizes, dtype=np.int64),
        )

    def tree(self) -> dict:
        """Nested {"level": L, "id": g, "size": n, "children": [...]}; the root is level 1, id 0
        (all customers), the leaves are level k (the segments). "size" is present when sizes are known."""
        k = self.k
        levels = [lvl for lvl in self.levels if lvl > 1]
        groups = {lvl: self.parents.get(lvl, np.arange(k)) for lvl in levels}
        groups[1] = np.zeros(k, dtype=np.int64)

        def node(level_pos: int, members: np.ndarray) -> dict:
            level = 1 if level_pos < 0 else levels[level_pos]
            out: dict = {"level": level, "id": int(groups[level][members[0]])}
            if self.sizes is not None:
                out["size"] = int(self.sizes[members].sum())
            children = []
            if level_pos + 1 < len(levels):
                child_ids = groups[levels[level_pos + 1]][members]
                for child in np.unique(child_ids):
                    children.append(node(level_pos + 1, members[child_ids == child]))
            out["children"] = children
            return out

        return node(-1, np.arange(k))


def default_levels(k: int) -> list[int]:
    """Powers of 4 strictly below k, then k: 16 -> [4, 16], 64 -> [4, 16, 64], 6 -> [4, 6], 3 -> [3]."""
    levels, level = [], 4
    while level < k:
        levels.append(level)
        level *= 4
    return levels + [k]


def weighted_ward_linkage(centroids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Size-weighted Ward linkage of k points.

    centroids: float [k, d]; sizes: int [k] (clipped to >= 1). Returns a scipy linkage matrix float64
    [k - 1, 4]: merged ids, height sqrt(2 * merge cost) with sizes scaled to mean 1 (so two
    mean-size segments merge at their Euclidean distance), and the number of leaf segments merged.
    """
    c = np.asarray(centroids, dtype=np.float64).copy()
    k = len(c)
    w = np.maximum(np.asarray(sizes, dtype=np.float64), 1.0)
    w = w / w.mean()
    cluster_id = np.arange(k)  # slot -> scipy cluster id; a merged cluster reuses its first slot
    n_leaves = np.ones(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    sq = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    cost = w[:, None] * w[None, :] / (w[:, None] + w[None, :]) * sq
    cost[np.tril_indices(k)] = np.inf  # keep i < j only
    linkage = np.zeros((max(k - 1, 0), 4))
    for step in range(k - 1):
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        a, b = sorted((cluster_id[i], cluster_id[j]))
        linkage[step] = [a, b, np.sqrt(2.0 * cost[i, j]), n_leaves[i] + n_leaves[j]]
        c[i] = (w[i] * c[i] + w[j] * c[j]) / (w[i] + w[j])
        w[i] += w[j]
        n_leaves[i] += n_leaves[j]
        cluster_id[i] = k + step
        active[j] = False
        cost[j, :] = np.inf
        cost[:, j] = np.inf
        others = np.flatnonzero(active)
        others = others[others != i]
        new_cost = w[i] * w[others] / (w[i] + w[others]) * ((c[others] - c[i]) ** 2).sum(-1)
        lo, hi = np.minimum(i, others), np.maximum(i, others)
        cost[lo, hi] = new_cost
    return linkage


def _cut(linkage: np.ndarray, k: int, n_groups: int) -> np.ndarray:
    """Replay the first k - n_groups merges; int64 [k] group ids 0..n_groups-1 in leaf order."""
    group = np.arange(2 * k - 1)
    for step in range(k - n_groups):
        a, b = int(linkage[step, 0]), int(linkage[step, 1])
        group[group == a] = k + step
        group[group == b] = k + step
    _, first_leaf, inverse = np.unique(group[:k], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_leaf))  # number groups by their lowest leaf segment
    return rank[inverse].astype(np.int64)


def build_hierarchy(centroids: np.ndarray, sizes: np.ndarray, levels: list[int] | None = None) -> Hierarchy:
    """Coarser levels over k segments by size-weighted Ward linkage on the centroids.

    centroids: float32 [k, d], L2-normalised; sizes: int64 [k] customers per segment;
    levels: ascending group counts (default `default_levels(k)`), k is appended when missing.
    Group ids at each level are numbered by their lowest leaf segment (group 0 holds segment 0).
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    k = len(centroids)
    if centroids.ndim != 2 or k < 1 or len(sizes) != k:
        raise ValueError(
            f"build_hierarchy: need centroids [k, d] and sizes [k], got {centroids.shape} and {len(sizes)}"
        )
    levels = default_levels(k) if levels is None else sorted({int(level) for level in levels}) or [k]
    if levels[0] < 1 or levels[-1] > k:
        raise ValueError(f"build_hierarchy: levels {levels} must lie in 1..k={k}")
    if levels[-1] != k:
        levels.append(k)
    linkage = weighted_ward_linkage(centroids, sizes)
    parents = {level: _cut(linkage, k, level) for level in levels[:-1]}
    log.info("hierarchy: k=%d levels=%s", k, levels)
    return Hierarchy(levels, parents, linkage, np.asarray(sizes, dtype=np.int64))


def level_columns(labels: np.ndarray, hierarchy: Hierarchy) -> dict[str, np.ndarray]:
    """Per-customer group ids at each coarser level: {"level_4": int64 [n], "level_16": ...}."""
    labels = np.asarray(labels, dtype=np.int64)
    return {f"level_{level}": hierarchy.parents[level][labels] for level in hierarchy.levels[:-1]}
