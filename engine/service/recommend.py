"""The service's recommendation answers: a stored customer's list, a list from raw recent events (a known
customer's stored history first, as /score does), and the items that over-index in a segment.

Every answer is computed from one ``bundle.customers`` taken once, so an erased customer is never in one."""

from __future__ import annotations

import numpy as np

from engine.bundle import Bundle, BundleError, UnknownCustomer
from engine.data.store import SequenceStore
from engine.embed.online import scorer, validate_events
from engine.recommend.candidates import Filters
from engine.recommend.items import Purchases
from engine.recommend.segments import SegmentBuyers
from engine.service.answers import UnknownSegment, json_safe

MAX_ITEMS = 500  # items per answer


def recommender_of(bundle: Bundle):
    rec = bundle.recommender
    if rec is None:
        raise BundleError(f"{bundle.path}: this bundle has no recommender (trained with recommend.enabled=false, "
                          "on a log too short to learn one, or by an older engine): retrain it with train.py")
    return rec


def filters(bundle: Bundle, exclude_recent_days: float = 0.0, new_only: bool = False,
            categories: list[str] | None = None, exclude_returned: bool = True) -> Filters:
    """Filters from a request; ValueError (422) naming ``category`` for a category the bundle does not know."""
    return Filters.of(bundle.vocabs["category"], exclude_recent_days, exclude_returned, new_only, categories,
                      "category")


def _answer(bundle: Bundle, store: SequenceStore, as_of: int, n: int, f: Filters) -> list[dict]:
    rec = recommender_of(bundle)
    # only the new-item lists read the model (engine.recommend.recommender.fit_recommender)
    sequence = scorer(bundle).sequence(store)[None] if rec.index is not None and f.new_only else None
    p = Purchases.of(store, as_of)
    items, scores = rec.recommend(p, sequence, as_of, n, f)
    vocab, categories = bundle.vocabs["item_id"], bundle.vocabs["category"]
    last = {int(i): int(t) for i, t in zip(p.item, p.ts, strict=True)}  # the latest purchase of each item
    out = []
    for rank, (item, score) in enumerate(zip(items[0], scores[0], strict=True), 1):
        if item <= 0:
            break
        category = int(rec.stats.category[item])
        out.append({"item_id": vocab[item], "rank": rank, "score": float(score),
                    "category": categories[category] if category else None,
                    "bought_before": int(item) in last, "last_bought": last.get(int(item))})
    return out


def _filters_answer(f: Filters, bundle: Bundle) -> dict:
    names = bundle.vocabs["category"]
    return {"exclude_recent_days": f.exclude_recent_days, "exclude_returned": f.exclude_returned,
            "new_only": f.new_only, "categories": None if f.categories is None else [names[i] for i in f.categories]}


def customer_recommendations(bundle: Bundle, customer_id: str, n: int, f: Filters) -> dict:
    """The ``n`` items a stored customer is most likely to buy next (filters applied), as of the bundle."""
    c = bundle.customers
    row = c.row.get(customer_id)
    if row is None:
        raise UnknownCustomer(customer_id)
    store = c.store.take(np.array([row]))
    as_of = bundle.as_of
    return json_safe({"customer_id": customer_id, "known": True, "as_of": as_of, "history_events": store.n_events,
                      "filters": _filters_answer(f, bundle), "items": _answer(bundle, store, as_of, n, f)})


def events_recommendations(bundle: Bundle, events: list[dict], customer_id: str | None, n: int, f: Filters) -> dict:
    """Recommendations from raw recent events (after a known customer's stored history), as of the later of
    the bundle's as_of and the latest event."""
    s = scorer(bundle)
    store, known = s.history(s.encode(validate_events(events, bundle.customers.store.return_types)), customer_id)
    as_of = max(bundle.as_of, int(store.columns["ts"][-1]) + 1)
    return json_safe({"customer_id": customer_id, "known": known, "as_of": as_of, "history_events": store.n_events,
                      "filters": _filters_answer(f, bundle), "items": _answer(bundle, store, as_of, n, f)})


def _segment_buyers(bundle: Bundle) -> SegmentBuyers:
    """The current customers' buyers per segment and item, counted once per version of them (an erasure
    makes a new one, so an erased customer no longer counts)."""
    c = bundle.customers
    if "segment_buyers" not in c.cache:
        c.cache["segment_buyers"] = SegmentBuyers.count(c.store, c.segments["segment"].to_numpy(), bundle.k)
    return c.cache["segment_buyers"]


def segment_items(bundle: Bundle, segment_id: int, n: int, min_share: float) -> dict:
    """The items that over-index in a segment: bought by at least ``min_share`` of its customers (and two of
    them), ranked by lift (the share of the segment that buys the item over the share of the whole base),
    lift above 1 only."""
    if not 0 <= segment_id < bundle.k:
        raise UnknownSegment(segment_id, bundle.k)
    counts = _segment_buyers(bundle)
    vocab, categories = bundle.vocabs["item_id"], bundle.vocabs["category"]
    items = [{"item_id": vocab[p["item"]], "category": categories[p["category"]] if p["category"] else None,
              **{k: p[k] for k in ("buyers", "share", "base_share", "lift")}}
             for p in counts.over_indexing(segment_id, n, min_share)]
    return json_safe({"segment": segment_id, "size": int(counts.sizes[segment_id]), "min_share": min_share,
                      "items": items})
