"""Candidate items per customer and the features the ranker reads, vectorised over a batch of customers.

Candidates of a customer: the items they bought, the nearest items of what they bought (co-occurrence),
the items their embedding scores highest (the encoder's item head: a cosine between the customer and one
vector per frequent item), and the most bought items of the last weeks. Each (customer, item) pair gets
FEATURES: how often and how lately the customer bought it and whether it is due (the customer's own
interval between purchases of it), the customer's share of its category, its popularity and repeat rate,
its co-occurrence score and the model's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from engine.recommend.items import DAY, RECENT_DAYS, ItemStats, Purchases, top_per_row

FEATURES = ("own_count", "own_share", "bought", "days_since", "recent_count", "due", "has_interval",
            "returned", "popularity", "recent_popularity", "repeat_rate", "cooccurrence", "model_score",
            "in_model", "category_share", "item_age", "customer_lines", "customer_items", "customer_recency")
OWN, NEAREST, MODEL, POPULAR = 300, 100, 50, 100  # candidates per customer from each source, at most


@dataclass
class ModelScores:
    """The encoder's item affinities: customer embeddings [n, d] against item vectors [n_head, d] (ids
    1..n_head-1 are items of the vocabulary; both L2-normalised), as cosine / temperature."""

    embeddings: np.ndarray
    item_vectors: np.ndarray
    temperature: float
    index: object | None = None  # a FAISS inner-product index of item_vectors (ids = item ids): the top items

    def top(self, k: int) -> np.ndarray:
        """int64 [n, k]: each customer's k best-scored head items."""
        k = min(k, len(self.item_vectors) - 1)
        if self.index is not None:
            _, ids = self.index.search(np.ascontiguousarray(self.embeddings, np.float32), k + 1)
            # id 0 (unknown) is never an answer: where it ranks in the top k, the (k+1)-th takes its place
            return np.where(ids <= 0, ids[:, -1:], ids)[:, :k]
        return np.argpartition(-self.dense(), k - 1, axis=1)[:, :k]

    def dense(self) -> np.ndarray:
        """float32 [n, n_head]: every customer's score of every head item (id 0 at -inf)."""
        s = (self.embeddings @ self.item_vectors.T) / np.float32(self.temperature)
        s[:, 0] = -np.inf
        return s

    def pairs(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float32 [m]: the score of each (row, head item) pair; a few customers' pairs one by one, a batch's
        through the dense product."""
        if len(self.embeddings) > 64:
            return self.dense()[rows, items]
        out = np.empty(len(rows), np.float32)
        for start in range(0, len(rows), 1 << 16):
            r, i = rows[start:start + (1 << 16)], items[start:start + (1 << 16)]
            out[start:start + len(r)] = np.einsum("ij,ij->i", self.embeddings[r], self.item_vectors[i])
        return out / np.float32(self.temperature)


@dataclass
class Filters:
    """What a shop leaves out: items bought in the last ``exclude_recent_days`` days, items the customer
    returned, every item they bought before (``new_only``), items outside ``categories`` (ids)."""

    exclude_recent_days: float = 0.0
    exclude_returned: bool = True
    new_only: bool = False
    categories: np.ndarray | None = None

    @classmethod
    def of(cls, category_vocab: list[str], exclude_recent_days: float = 0.0, exclude_returned: bool = True,
           new_only: bool = False, categories: list[str] | None = None, key: str = "categories") -> Filters:
        """Filters with category names as the vocabulary's ids; ValueError naming ``key`` for a name it lacks."""
        ids = None
        if categories:
            known = {name: i for i, name in enumerate(category_vocab) if i > 0}
            missing = [c for c in categories if c not in known]
            if missing:
                raise ValueError(f"{key}: {missing} not among the {len(known)} categories of this log "
                                 f"(e.g. {sorted(known)[:5]})")
            ids = np.array([known[c] for c in categories], dtype=np.int64)
        return cls(float(exclude_recent_days), bool(exclude_returned), bool(new_only), ids)


@dataclass
class Candidates:
    row: np.ndarray       # int64 [m], ascending
    item: np.ndarray      # int64 [m]
    features: np.ndarray  # float32 [m, len(FEATURES)]
    allowed: np.ndarray   # bool [m]: passes the filters


def _lookup(keys: np.ndarray, table_keys: np.ndarray, values: np.ndarray, default=0.0) -> np.ndarray:
    """values[j] where table_keys[j] == keys[i] (table_keys ascending), else default."""
    if len(table_keys) == 0:
        return np.full(len(keys), default, dtype=values.dtype)
    at = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return np.where(table_keys[at] == keys, values[at], default)


def candidates(p: Purchases, stats: ItemStats, as_of: int, model: ModelScores | None = None,
               filters: Filters | None = None, sources: tuple[int, int, int, int] = (OWN, NEAREST, MODEL, POPULAR),
               ) -> Candidates:
    """The candidate (row, item) pairs of ``p``'s customers with their FEATURES as of ``as_of`` (purchases
    at or after it are not read)."""
    p = p.before(as_of) if len(p.ts) and p.ts.max() >= as_of else p
    filters = filters or Filters()
    n_items, n = stats.n_items, p.n
    own_k, near_k, model_k, popular_k = sources

    # the customer's own (row, item) pairs: count, first and last purchase, recent count
    key = p.row * n_items + p.item
    pairs, inverse = np.unique(key, return_inverse=True)
    count = np.bincount(inverse, minlength=len(pairs)).astype(np.float64)
    last = np.full(len(pairs), np.iinfo(np.int64).min)
    np.maximum.at(last, inverse, p.ts)
    first = np.full(len(pairs), np.iinfo(np.int64).max)
    np.minimum.at(first, inverse, p.ts)
    recent = np.bincount(inverse, weights=(p.ts >= as_of - RECENT_DAYS * DAY).astype(float), minlength=len(pairs))
    pair_row, pair_item = pairs // n_items, pairs % n_items

    sources_keys = [pairs[top_per_row(pair_row, count + last / 1e12, own_k)]]
    weights = sp.csr_matrix((np.log1p(count).astype(np.float32), (pair_row, pair_item)), shape=(n, n_items))
    near = (weights @ stats.neighbour_matrix()).tocoo()
    near_keys = near.row.astype(np.int64) * n_items + near.col
    order = np.argsort(near_keys)
    near_keys, near_score = near_keys[order], near.data[order].astype(np.float64)
    sources_keys.append(near_keys[top_per_row(near_keys // n_items, near_score, near_k)])
    if model is not None and model_k:
        sources_keys.append((np.arange(n)[:, None] * n_items + model.top(model_k)).ravel())
    popular = np.union1d(stats.popular(popular_k), stats.popular(popular_k // 2, recent=True))
    if filters.categories is not None:  # enough of the asked categories to fill a list
        allowed_items = np.flatnonzero(np.isin(stats.category, filters.categories) & (stats.buyers > 0))
        popular = np.union1d(popular, allowed_items[np.argsort(-stats.buyers[allowed_items])][:popular_k])
    sources_keys.append((np.arange(n)[:, None] * n_items + popular[None, :]).ravel())
    keys = np.unique(np.concatenate(sources_keys))
    row, item = keys // n_items, keys % n_items

    # features
    f = np.zeros((len(keys), len(FEATURES)), np.float32)
    c = _lookup(keys, pairs, count)
    lines = np.bincount(p.row, minlength=n).astype(np.float64)
    distinct = np.bincount(pair_row, minlength=n).astype(np.float64)
    customer_last = np.full(n, as_of - 365 * DAY, np.int64)
    if len(p.ts):
        np.maximum.at(customer_last, p.row, p.ts)
    bought = c > 0
    days_since = np.where(bought, (as_of - _lookup(keys, pairs, last, as_of)) / DAY, 0.0)
    span = (_lookup(keys, pairs, last, 0) - _lookup(keys, pairs, first, 0)) / DAY
    interval = np.where(c >= 2, span / np.maximum(c - 1, 1), 0.0)
    returned = np.zeros(len(keys), bool)
    if p.returned.size:
        returned = np.isin(keys, p.returned[0] * n_items + p.returned[1])
    f[:, 0] = np.log1p(c)
    f[:, 1] = c / np.maximum(lines[row], 1)
    f[:, 2] = bought
    f[:, 3] = np.log1p(days_since)
    f[:, 4] = np.log1p(_lookup(keys, pairs, recent))
    f[:, 5] = np.where(c >= 2, np.log1p(days_since) - np.log1p(interval), 0.0)
    f[:, 6] = c >= 2
    f[:, 7] = returned
    base = np.log1p(max(stats.n_customers, 1))
    f[:, 8] = np.log1p(stats.buyers[item]) / base
    f[:, 9] = np.log1p(stats.recent_buyers[item]) / base
    f[:, 10] = (stats.repeat_buyers[item] + 0.5) / (stats.buyers[item] + 1.0)
    f[:, 11] = np.log1p(_lookup(keys, near_keys, near_score))
    if model is not None:
        head = (item < len(model.item_vectors)) & (item > 0)
        f[head, 12] = model.pairs(row[head], item[head])
        f[:, 13] = head
    n_cats = int(stats.category.max()) + 1
    cat_of_purchase = stats.category[p.item].astype(np.int64)
    cat_counts = np.bincount(p.row * n_cats + cat_of_purchase, minlength=n * n_cats)
    f[:, 14] = cat_counts[row * n_cats + stats.category[item]] / np.maximum(lines[row], 1)
    f[:, 15] = np.log1p(np.maximum(as_of - stats.first_seen[item], 0) / DAY)
    f[:, 16] = np.log1p(lines[row])
    f[:, 17] = np.log1p(distinct[row])
    f[:, 18] = np.log1p(np.maximum(as_of - customer_last[row], 0) / DAY)

    allowed = np.ones(len(keys), bool)
    if filters.exclude_recent_days > 0:
        allowed &= ~(bought & (days_since < filters.exclude_recent_days))
    if filters.exclude_returned:
        allowed &= ~returned
    if filters.new_only:
        allowed &= ~bought
    if filters.categories is not None:
        allowed &= np.isin(stats.category[item], filters.categories)
    return Candidates(row, item, f, allowed)


def top_n(row: np.ndarray, item: np.ndarray, score: np.ndarray, n_rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(items int64 [n_rows, n], scores float32 [n_rows, n]): each row's ``n`` best-scored items, best first
    (item 0 and score NaN pad a row with fewer)."""
    pick = top_per_row(row, score, n)
    r, i, s = row[pick], item[pick], score[pick]
    rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
    items = np.zeros((n_rows, n), np.int64)
    scores = np.full((n_rows, n), np.nan, np.float32)
    items[r, rank], scores[r, rank] = i, s
    return items, scores
