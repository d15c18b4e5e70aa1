"""What sets each segment apart from the base, in words a marketer reads: the categories and products its
customers buy far more often than the average customer (lift), the channels they favour, its value tier, the
share lapsing, a short generated name such as "high value, weekly shoppers: produce, dairy", and a one-line
description of its profile (``descriptions``).

Lift of a token in a segment = the share of the segment's customers who bought it / the share of the whole
base who did; only tokens bought by at least ``min_share`` of the segment count, so a lift is never a
handful of customers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from engine.data.store import SequenceStore
from engine.data.summary import purchase_counts
from engine.forecast.baselines import rfm_inputs
from engine.segment.formats import missing, money, percent
from engine.segment.profiles import read_channel_mix

TIERS = ("low", "mid", "high", "top")  # value tiers: the segment's mean expected spend over the base's mean,
TIER_RATIOS = (0.5, 1.0, 2.0)          # below 0.5, 0.5-1, 1-2, 2 and above


def lifts(store: SequenceStore, labels: np.ndarray, k: int, field: str, top_n: int = 5,
          min_share: float = 0.1) -> tuple[list[list[str]], list[list[float]]]:
    """Per segment, the top_n tokens of ``field`` by lift (bought by >= min_share of the segment)."""
    buyers = purchase_counts(store, field).tocsc()
    buyers.data[:] = 1.0  # buyers, not purchases
    onehot = sp.csr_matrix((np.ones(len(labels), np.float32), (labels, np.arange(len(labels)))),
                           shape=(k, len(labels)))
    per_segment = np.asarray((onehot @ buyers).todense())  # [k, tokens] buyers in each segment
    sizes = np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    share = per_segment / sizes
    base = np.asarray(buyers.sum(axis=0)).ravel() / max(len(labels), 1)
    lift = np.where((share >= min_share) & (base > 0), share / np.maximum(base, 1e-12), 0.0)
    lift[:, 0] = 0.0  # the unknown token
    vocab = store.vocabs[field]
    names, values = [], []
    for s in range(k):  # a loop over segments, not customers
        order = np.argsort(-lift[s], kind="stable")[:top_n]
        order = order[lift[s, order] > 1.0]
        names.append([vocab[j] for j in order])
        values.append([round(float(lift[s, j]), 2) for j in order])
    return names, values


def _cadence(days_between: float) -> str:
    if not np.isfinite(days_between):
        return "one-time"
    if days_between <= 9:
        return "weekly"
    if days_between <= 20:
        return "fortnightly"
    if days_between <= 45:
        return "monthly"
    return "occasional"


def describe(store: SequenceStore, labels: np.ndarray, k: int, as_of: int,
             expected_spend: np.ndarray | None = None, top_n: int = 5) -> pa.Table:
    """One row per segment: name, value_tier, distinctive_categories / category_lift, distinctive_items /
    item_lift, distinctive_channels / channel_lift, median_days_between_purchases, lapsing_share (no purchase for over twice the customer's own
    usual gap, or 60 days for one-time buyers) and mean_predicted_spend when given."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    categories, category_lift = lifts(store, labels, k, "category", top_n)
    items, item_lift = lifts(store, labels, k, "item_id", top_n)
    channels, channel_lift = lifts(store, labels, k, "channel", top_n)

    f = rfm_inputs(store, as_of)  # purchase days: frequency = repeat days, recency = first to last day
    bought = f["n_purchases"] > 0
    gap = np.divide(f["recency"], f["frequency"], out=np.full(n, np.inf), where=f["frequency"] > 0)
    since = np.where(bought, f["T"] - f["recency"], np.inf)  # days from the last purchase day to as_of
    lapsing = since > np.where(np.isfinite(gap), np.maximum(2 * gap, 14), 60)

    value = expected_spend if expected_spend is not None else np.zeros(n)
    base_value = float(value.mean()) if n else 0.0
    out = {"segment": np.arange(k, dtype=np.int64), "name": [], "value_tier": [], "distinctive_categories":
           categories, "category_lift": category_lift, "distinctive_items": items, "item_lift": item_lift,
           "distinctive_channels": channels, "channel_lift": channel_lift, "median_days_between_purchases": [], "lapsing_share": []}
    if expected_spend is not None:
        out["mean_predicted_spend"] = []
    for s in range(k):  # a loop over segments, not customers
        members = labels == s
        mean_value = float(value[members].mean()) if members.any() else 0.0
        tier = TIERS[int(np.searchsorted(TIER_RATIOS, mean_value / max(base_value, 1e-12), side="right"))]
        finite = gap[members & np.isfinite(gap)]
        median_gap = float(np.median(finite)) if len(finite) * 2 > members.sum() else float("inf")
        out["median_days_between_purchases"].append(median_gap if np.isfinite(median_gap) else float("nan"))
        out["lapsing_share"].append(float(lapsing[members].mean()) if members.any() else float("nan"))
        lapse = " lapsing" if out["lapsing_share"][-1] > 0.5 else ""
        what = ", ".join(c.lower() for c in categories[s][:2])
        out["name"].append(f"{tier} value, {_cadence(median_gap)}{lapse} shoppers" + (f": {what}" if what else ""))
        out["value_tier"].append(tier)
        if expected_spend is not None:
            out["mean_predicted_spend"].append(mean_value)
    return pa.table(out)


_CADENCE_WORDS = {"weekly": "buying weekly", "fortnightly": "buying fortnightly", "monthly": "buying monthly",
                  "occasional": "buying occasionally", "one-time": "mostly buying once"}


def _sentence(p: dict, horizon_days: float | None) -> str:
    """One profile row (profiles merged with ``describe``'s columns; any may be missing) in one sentence."""
    who = [f"{percent(p['share'])} of customers"]
    if p.get("value_tier"):
        who.append(f"{p['value_tier']} value")
    if "median_days_between_purchases" in p:
        gap = p["median_days_between_purchases"]
        who.append(_CADENCE_WORDS[_cadence(float("inf") if missing(gap) else gap)])
    parts = [", ".join(who)]
    lifted = list(zip(p.get("distinctive_categories") or [], p.get("category_lift") or [], strict=True))[:3]
    if lifted:
        parts.append("over-index on " + ", ".join(f"{c.lower()} ×{x:.1f}" for c, x in lifted))
    mix = read_channel_mix(p.get("channel_mix"))
    if mix:
        channel, share = max(mix.items(), key=lambda item: item[1])
        parts.append(f"mostly {channel} ({percent(share)})")
    if not missing(p.get("mean_expected_spend")):
        over = f"the next {horizon_days:g} days" if horizon_days else "the forecast horizon"
        parts.append(f"forecast revenue {money(p['mean_expected_spend'] * p['size'], whole=True)} over {over}")
    if not missing(p.get("mean_p_churn")):
        lapse = p.get("mean_likely_to_lapse")
        parts.append(f"churn risk {percent(p['mean_p_churn'])}"
                     + ("" if missing(lapse) else f", {percent(lapse)} likely to lapse"))
    elif not missing(p.get("lapsing_share")):
        parts.append(f"{percent(p['lapsing_share'])} lapsing")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def descriptions(profiles: pa.Table, horizon_days: float | None = None) -> list[str]:
    """One plain-English sentence per segment from its profile: size share, value tier, cadence, top categories
    with their lift, main channel, forecast revenue over ``horizon_days`` and churn risk, e.g. "18% of
    customers, top value, buying weekly; over-index on wine ×10.0, dairy ×2.1; mostly web (64%); forecast
    revenue 12,345 over the next 30 days; churn risk 23%, 18% likely to lapse." """
    return [_sentence(p, horizon_days) for p in profiles.to_pylist()]
