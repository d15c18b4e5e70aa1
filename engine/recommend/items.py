"""What the recommender knows about items, from the purchase history before an as-of time.

ItemStats holds per-item arrays over the store's item vocabulary (id 0, unknown, is never recommended):
buyers, recent buyers, repeat rate, category, first purchase, and each item's nearest items by cosine
co-occurrence (two items are close when the same customers buy both). It is computed once per bundle and
saved as plain .npy files, so the service loads it without unpickling anything.

Purchases are one flat batch of customers' purchase lines (row, item, time), the unit every scorer here
works on: a whole base in chunks for stage=recommend, one customer for the service.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from engine.data.store import SequenceStore

log = logging.getLogger(__name__)

DAY = 86400
RECENT_DAYS = 28  # the window of "recent" popularity and of a customer's recent purchases
NEIGHBOURS = 50  # nearest items kept per item
MAX_CUSTOMERS = 50_000  # customers the co-occurrence is counted over, at most (a seeded sample beyond)
MAX_ITEMS_PER_CUSTOMER = 150  # of each, the most recently bought distinct items
DIRECTORY = "items"


@dataclass
class Purchases:
    """Purchase lines of ``n`` customers: row (0..n-1), item id, ts (epoch s), all int64 [m], in row order;
    ``returned`` holds (row, item, ts) of their returns, as int64 [3, r], in row order."""

    n: int
    row: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    returned: np.ndarray

    @classmethod
    def of(cls, store: SequenceStore, as_of: int | None = None) -> Purchases:
        """The purchase lines (known items only) of every customer of ``store`` before ``as_of``."""
        ts = np.asarray(store.columns["ts"], dtype=np.int64)
        item = np.asarray(store.columns["item_id"], dtype=np.int64)
        before = ts < as_of if as_of is not None else np.ones(len(ts), bool)
        rows = store.customer_rows()
        keep = before & store.is_purchase() & (item > 0)
        back = before & store.is_return() & (item > 0)
        return cls(store.n_customers, rows[keep], item[keep], ts[keep], np.stack([rows[back], item[back], ts[back]]))

    def before(self, t: int) -> Purchases:
        """The purchases and returns before ``t`` (a later return is not known at ``t``)."""
        keep = self.ts < t
        r = self.returned
        return Purchases(self.n, self.row[keep], self.item[keep], self.ts[keep], r[:, r[2] < t])

    def take(self, rows: np.ndarray) -> Purchases:
        """The purchases of ``rows`` (in that order), renumbered 0..len(rows)-1, in row order."""
        rows = np.asarray(rows, dtype=np.int64)
        new = np.full(self.n, -1, np.int64)
        new[rows] = np.arange(len(rows))
        keep = np.flatnonzero(new[self.row] >= 0)
        keep = keep[np.argsort(new[self.row[keep]], kind="stable")]  # by new row, time order kept within
        r = self.returned
        back = np.flatnonzero(new[r[0]] >= 0) if r.size else np.zeros(0, np.int64)
        back = back[np.argsort(new[r[0][back]], kind="stable")]
        return Purchases(len(rows), new[self.row[keep]], self.item[keep], self.ts[keep],
                         np.stack([new[r[0][back]], r[1][back], r[2][back]]))

    def slice(self, start: int, stop: int) -> Purchases:
        """The purchases of rows [start, stop), renumbered from 0 (rows are in order: two binary searches)."""
        a, b = np.searchsorted(self.row, [start, stop])
        r = self.returned
        ra, rb = np.searchsorted(r[0], [start, stop]) if r.size else (0, 0)
        return Purchases(stop - start, self.row[a:b] - start, self.item[a:b], self.ts[a:b], r[:, ra:rb] - [[start], [0], [0]])

    def counts(self, n_items: int) -> sp.csr_matrix:
        """float32 [n, n_items]: purchase lines per (customer, item)."""
        return sp.csr_matrix((np.ones(len(self.row), np.float32), (self.row, self.item)), shape=(self.n, n_items))


@dataclass
class ItemStats:
    """Per-item facts as of ``as_of`` (arrays over the item vocabulary, [n_items])."""

    buyers: np.ndarray          # float32: distinct customers who bought the item
    recent_buyers: np.ndarray   # float32: ... in the RECENT_DAYS before as_of
    repeat_buyers: np.ndarray   # float32: ... who bought it on two or more lines
    category: np.ndarray        # int32: the item's category id (0 unknown)
    first_seen: np.ndarray      # int64: its first purchase, epoch s (as_of when never bought)
    neighbours: np.ndarray      # int32 [n_items, NEIGHBOURS]: nearest items by co-occurrence (0: none)
    similarity: np.ndarray      # float32 [n_items, NEIGHBOURS]: their cosine similarity
    as_of: int
    n_customers: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # derived arrays, built on first use

    @property
    def n_items(self) -> int:
        return len(self.buyers)

    def popular(self, n: int, recent: bool = False) -> np.ndarray:
        """The ``n`` most bought item ids (by distinct buyers), most bought first."""
        key = ("recent" if recent else "all", n)
        if key not in self._cache:
            score = self.recent_buyers if recent else self.buyers
            top = np.argsort(-score, kind="stable")
            self._cache[key] = top[score[top] > 0][:n]
        return self._cache[key]

    def neighbour_matrix(self) -> sp.csr_matrix:
        """float32 [n_items, n_items]: row i holds the similarity of item i's nearest items (built once)."""
        if "neighbours" not in self._cache:
            n, k = self.neighbours.shape
            rows = np.repeat(np.arange(n), k)
            keep = self.similarity.ravel() > 0
            self._cache["neighbours"] = sp.csr_matrix(
                (self.similarity.ravel()[keep], (rows[keep], self.neighbours.ravel()[keep])), shape=(n, n))
        return self._cache["neighbours"]

    def save(self, directory: str | Path) -> None:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for f in fields(self):
            if f.name not in ("as_of", "n_customers", "_cache"):
                np.save(out / f"{f.name}.npy", getattr(self, f.name))
        (out / "items.json").write_text(json.dumps({"as_of": self.as_of, "n_customers": self.n_customers}))

    @classmethod
    def load(cls, directory: str | Path) -> ItemStats:
        path = Path(directory)
        meta = json.loads((path / "items.json").read_text())
        arrays = {f.name: np.load(path / f"{f.name}.npy", allow_pickle=False)
                  for f in fields(cls) if f.name not in ("as_of", "n_customers", "_cache")}
        return cls(**arrays, as_of=int(meta["as_of"]), n_customers=int(meta["n_customers"]))

    @classmethod
    def build(cls, store: SequenceStore, as_of: int, purchases: Purchases | None = None, seed: int = 0) -> ItemStats:
        """From the purchases of ``store`` before ``as_of``."""
        p = purchases if purchases is not None else Purchases.of(store, as_of)
        n_items = len(store.vocabs["item_id"])
        counts = p.counts(n_items)
        counts.sum_duplicates()
        buyers = np.bincount(counts.indices, minlength=n_items).astype(np.float32)
        repeat = np.bincount(counts.indices[counts.data >= 2], minlength=n_items).astype(np.float32)
        recent = p.ts >= as_of - RECENT_DAYS * DAY
        pairs = np.unique(p.row[recent] * n_items + p.item[recent])
        recent_buyers = np.bincount(pairs % n_items, minlength=n_items).astype(np.float32)
        category = item_categories(store).astype(np.int32)
        first_seen = np.full(n_items, as_of, np.int64)
        np.minimum.at(first_seen, p.item, p.ts)
        neighbours, similarity = cooccurrence(p, n_items, seed)
        return cls(buyers, recent_buyers, repeat, category, first_seen, neighbours, similarity, int(as_of), p.n)


def item_categories(store: SequenceStore) -> np.ndarray:
    """int64 [n_items]: each item's category id, its last event's (0 for the unknown item and unseen ones)."""
    category = np.zeros(len(store.vocabs["item_id"]), np.int64)
    category[np.asarray(store.columns["item_id"], dtype=np.int64)] = np.asarray(store.columns["category"])
    category[0] = 0
    return category


def top_per_row(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best-scored entries of each row (entries in any order), by row and then best
    first. One float64 sort: the row plus the score squeezed into [0, 0.5) (3x faster than a lexsort on
    millions of entries; ties keep their order)."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    s = np.asarray(scores, np.float64)
    lo, hi = float(s.min()), float(s.max())
    squeezed = (hi - s) / (hi - lo) * 0.5 if hi > lo else np.zeros(len(s))
    order = np.argsort(rows + squeezed, kind="stable")
    r = rows[order]
    return order[np.arange(len(r)) - np.searchsorted(r, r, side="left") < k]


def recent_distinct(p: Purchases, n_items: int, per_customer: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of each customer's ``per_customer`` most recently bought distinct items."""
    order = np.lexsort((-p.ts, p.row))  # by row, newest first
    key = p.row[order] * n_items + p.item[order]
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)  # the newest line of each (row, item), still by row then recency
    rows, items = p.row[order][first], p.item[order][first]
    start = np.searchsorted(rows, rows, side="left")
    keep = np.arange(len(rows)) - start < per_customer
    return rows[keep], items[keep]


def cooccurrence(p: Purchases, n_items: int, seed: int = 0, k: int = NEIGHBOURS,
                 block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest items by cosine similarity of their buyer sets (int32 ids, float32
    similarities [n_items, k]; id 0 and similarity 0 pad items with fewer neighbours). Counted over at
    most MAX_CUSTOMERS customers and each one's MAX_ITEMS_PER_CUSTOMER most recent distinct items, so
    the cost stays bounded on a large base."""
    rows, items = recent_distinct(p, n_items, MAX_ITEMS_PER_CUSTOMER)
    if p.n > MAX_CUSTOMERS:
        chosen = np.zeros(p.n, bool)
        chosen[np.random.default_rng(seed).choice(p.n, MAX_CUSTOMERS, replace=False)] = True
        rows, items = rows[chosen[rows]], items[chosen[rows]]
    b = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, items)), shape=(p.n, n_items))
    bt = b.T.tocsr()
    norms = np.sqrt(np.asarray(b.sum(0)).ravel()).astype(np.float32)
    inverse = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    neighbours = np.zeros((n_items, k), np.int32)
    similarity = np.zeros((n_items, k), np.float32)
    bought = np.flatnonzero(norms > 0)
    for start in range(0, len(bought), block):
        ids = bought[start:start + block]
        co = (bt[ids] @ b).tocoo()  # [block, n_items]: customers who bought both, sparse
        row, col = co.row.astype(np.int64), co.col.astype(np.int64)
        sim = co.data * inverse[ids][row] * inverse[col]
        keep = col != ids[row]
        pick = top_per_row(row[keep], sim[keep], k)
        row, col, sim = row[keep][pick], col[keep][pick], sim[keep][pick]
        rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
        neighbours[ids[row], rank] = col
        similarity[ids[row], rank] = sim
    return neighbours, similarity
