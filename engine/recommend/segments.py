"""What each segment buys more than the base: the items to promote to an audience, with lift. One computation
for the service (GET /segments/{id}/items) and the report's table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from engine.recommend.items import Purchases, item_categories


@dataclass
class SegmentBuyers:
    """per_segment: buyers of each item in each segment [k, n_items]; sizes: customers per segment [k];
    base: buyers of each item over all customers [n_items]; category: each item's category id [n_items]."""

    per_segment: np.ndarray
    sizes: np.ndarray
    base: np.ndarray
    category: np.ndarray

    @classmethod
    def count(cls, store, labels: np.ndarray, k: int) -> SegmentBuyers:
        """From the purchases of ``store``'s customers, ``labels`` their segments (int [n])."""
        p = Purchases.of(store)
        n, n_items = store.n_customers, len(store.vocabs["item_id"])
        bought = sp.csr_matrix((np.ones(len(p.row), np.float32), (p.row, p.item)), shape=(n, n_items))
        bought.sum_duplicates()
        bought.data = np.minimum(bought.data, 1.0)
        labels = np.asarray(labels, dtype=np.int64)
        member = sp.csr_matrix((np.ones(n, np.float32), (labels, np.arange(n))), shape=(k, n))
        return cls(np.asarray((member @ bought).todense()), np.bincount(labels, minlength=k),
                   np.asarray(bought.sum(0)).ravel(), item_categories(store))

    def over_indexing(self, segment: int, n: int, min_share: float) -> list[dict]:
        """The items bought by at least ``min_share`` of the segment (and two of its customers), lift above 1,
        highest lift first: {"item", "category", "buyers", "share", "base_share", "lift"} (ids)."""
        size, total = int(self.sizes[segment]), int(self.sizes.sum())
        share = self.per_segment[segment] / max(size, 1)
        base_share = self.base / max(total, 1)
        lift = np.where(base_share > 0, share / np.maximum(base_share, 1e-12), 0.0)
        eligible = np.flatnonzero((share >= min_share) & (self.per_segment[segment] >= 2) & (lift > 1))
        eligible = eligible[eligible > 0]
        top = eligible[np.argsort(-lift[eligible], kind="stable")][:n]
        return [{"item": int(i), "category": int(self.category[i]), "buyers": int(self.per_segment[segment, i]),
                 "share": float(share[i]), "base_share": float(base_share[i]), "lift": float(lift[i])} for i in top]


def promote_markdown(store, labels: np.ndarray, k: int, n: int = 3, min_share: float = 0.05) -> str:
    """The report's table: for each segment, the ``n`` items it over-indexes on most, as a marketer reads it."""
    counts = SegmentBuyers.count(store, labels, k)
    items, categories = store.vocabs["item_id"], store.vocabs["category"]
    lines = ["| segment | customers | item | category | buy it in the segment | in the whole base | lift |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in range(k):
        picks = counts.over_indexing(s, n, min_share)
        if not picks:
            lines.append(f"| {s} | {int(counts.sizes[s]):,} | (no item bought by {min_share:.0%} of it more than "
                         "by the base) | | | | |")
        for i, pick in enumerate(picks):
            lines.append(f"| {s if i == 0 else ''} | {f'{int(counts.sizes[s]):,}' if i == 0 else ''} | "
                         f"{items[pick['item']]} | {categories[pick['category']] if pick['category'] else '-'} | "
                         f"{pick['share']:.0%} | {pick['base_share']:.0%} | x{pick['lift']:.1f} |")
    return "\n".join(lines)
