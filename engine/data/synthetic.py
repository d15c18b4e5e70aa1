"""Synthetic e-commerce event log with planted customer archetypes: the default data and the ground truth.

Each customer has a main archetype. An archetype fixes WHAT is bought (a few favourite categories, its own
Zipf ranking of items inside them, cheap or expensive items), HOW (channel mix, hour of day, session length,
conversion, quantity, returns) and WHEN (regular or bursty sessions, ramp-up or decay, churn with warning
signs: sessions go on, purchases fade). Several archetypes share purchase rate and spend, so RFM features
cannot tell them apart but the sequences can. Each customer also re-buys a few personal favourite items.

The log does not flatter a model: archetypes overlap, many customers are barely seen, and the best sellers
are everyone's. What a customer buys mixes its main archetype with a second, random one (a per-customer
weight in [0, 0.5], mean ``overlap``), and a share ``2 * overlap`` of archetypes take another archetype's top
category as their last favourite. A share ``light_share`` of customers are light, with 1-5 events (1 the
likeliest), so a realistic share of buyers buy only once or twice; the others are lognormal, scaled so that
the mean stays ``mean_events``. A share ``popular_share`` of item draws follow global Zipf popularity
whatever the archetype. Setting the three to 0 gives disjoint archetypes and almost no light customers.
Generation is vectorized over arrays: customers -> sessions -> events -> returns, then one stable sort by
timestamp.

    python -m engine.data.synthetic --customers 5000 --out data/synthetic
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

EVENT_TYPES = ("view", "cart", "purchase", "return")
VIEW, CART, PURCHASE, RETURN = range(4)
CHANNELS = ("web", "app", "store", "email")
STORE = CHANNELS.index("store")
N_FAVOURITE_ITEMS = 3  # personal favourites per customer
FAVOURITE_CATEGORY_WEIGHTS = (0.45, 0.25, 0.12)  # the rest (18%) is spread over all categories
LIGHT_EVENTS = 1.0 / np.arange(1, 6)  # relative odds of 1..5 events for a light customer
SECONDS_PER_DAY = 86_400


@dataclass
class SyntheticConfig:
    n_customers: int = 5000
    n_archetypes: int = 6
    n_items: int = 2000
    n_categories: int = 40
    start: str = "2024-01-01"  # ISO date, UTC
    days: int = 365  # events span [start, start+days)
    mean_events: float = 60.0  # mean events per customer over the span (light ones included; min 1)
    overlap: float = 0.3  # mean weight of each customer's second archetype in what it buys, in [0, 0.5]
    light_share: float = 0.35  # share of light customers with 1-5 events, in [0, 1)
    popular_share: float = 0.25  # share of item draws from global popularity, any archetype, in [0, 1]
    seed: int = 0


@dataclass(frozen=True)
class Archetype:
    """Behaviour shared by the customers of one archetype."""

    name: str
    share: float  # relative share of customers
    rate: float  # relative events per day
    session_len: float  # mean events per session (geometric)
    conversion: float  # probability that a session ends in a purchase
    price_pref: float  # log-weight per std of log price within a category (> 0: expensive items)
    favourite_share: float  # probability that a cart/purchase is one of the customer's favourite items
    quantity: float  # mean units per purchase
    return_rate: float  # probability that a purchase is returned
    gap_shape: float  # gamma shape of gaps between sessions: > 1 regular, 1 Poisson, < 1 bursty
    trend: float  # log activity multiplier over the whole span (> 0 ramps up, < 0 decays)
    churn: float  # probability of stopping at a random time before the end
    channels: tuple[float, float, float, float]  # web, app, store, email
    hour_peak: float  # hour of day with the most sessions
    hour_focus: float  # concentration around hour_peak (0: flat)


# Pairs with the same purchases per day and spend per purchase: bargain_hunter ~ app_impulse,
# loyal_replenisher ~ store_regular; they differ in categories, channel, hours and regularity.
# fmt: off
ARCHETYPES = (
    Archetype(name="bargain_hunter", share=0.18, rate=1.40, session_len=4.5, conversion=0.45, price_pref=-1.5,
              favourite_share=0.10, quantity=2.0, return_rate=0.03, gap_shape=1.0, trend=0.0, churn=0.08,
              channels=(0.45, 0.20, 0.05, 0.30), hour_peak=13.0, hour_focus=1.0),
    Archetype(name="loyal_replenisher", share=0.17, rate=0.57, session_len=2.0, conversion=0.80, price_pref=-0.5,
              favourite_share=0.50, quantity=2.0, return_rate=0.01, gap_shape=6.0, trend=0.0, churn=0.03,
              channels=(0.60, 0.30, 0.05, 0.05), hour_peak=8.0, hour_focus=1.5),
    Archetype(name="luxury_browser", share=0.15, rate=1.60, session_len=6.0, conversion=0.15, price_pref=1.8,
              favourite_share=0.15, quantity=1.0, return_rate=0.15, gap_shape=0.5, trend=0.0, churn=0.08,
              channels=(0.55, 0.25, 0.15, 0.05), hour_peak=21.0, hour_focus=1.0),
    Archetype(name="app_impulse", share=0.18, rate=0.43, session_len=3.0, conversion=0.50, price_pref=0.0,
              favourite_share=0.10, quantity=1.0, return_rate=0.08, gap_shape=0.35, trend=1.2, churn=0.05,
              channels=(0.08, 0.85, 0.02, 0.05), hour_peak=23.0, hour_focus=2.0),
    Archetype(name="store_regular", share=0.17, rate=0.40, session_len=1.5, conversion=0.85, price_pref=0.0,
              favourite_share=0.30, quantity=1.6, return_rate=0.05, gap_shape=2.5, trend=0.0, churn=0.05,
              channels=(0.10, 0.05, 0.80, 0.05), hour_peak=15.0, hour_focus=1.5),
    Archetype(name="lapsing", share=0.15, rate=1.20, session_len=3.5, conversion=0.40, price_pref=0.0,
              favourite_share=0.15, quantity=1.2, return_rate=0.06, gap_shape=1.0, trend=-1.5, churn=0.75,
              channels=(0.45, 0.15, 0.10, 0.30), hour_peak=19.0, hour_focus=0.8),
)
# fmt: on


def _random_archetype(rng: np.random.Generator, index: int) -> Archetype:
    """A procedural archetype for index >= len(ARCHETYPES)."""
    return Archetype(
        name=f"archetype_{index:02d}",
        share=float(rng.uniform(0.1, 0.2)),
        rate=float(rng.uniform(0.4, 1.6)),
        session_len=float(rng.uniform(1.5, 6.0)),
        conversion=float(rng.uniform(0.15, 0.85)),
        price_pref=float(rng.normal(0.0, 1.0)),
        favourite_share=float(rng.uniform(0.05, 0.5)),
        quantity=float(rng.uniform(1.0, 2.5)),
        return_rate=float(rng.uniform(0.0, 0.12)),
        gap_shape=float(np.exp(rng.uniform(np.log(0.3), np.log(6.0)))),
        trend=float(rng.normal(0.0, 0.8)),
        churn=float(rng.uniform(0.0, 0.3)),
        channels=tuple(rng.dirichlet(np.ones(4))),
        hour_peak=float(rng.uniform(0, 24)),
        hour_focus=float(rng.uniform(0.5, 2.0)),
    )


def archetype_specs(n_archetypes: int, rng: np.random.Generator) -> list[Archetype]:
    """The first n_archetypes hand-written archetypes, then procedural ones."""
    extra = [_random_archetype(rng, k) for k in range(len(ARCHETYPES), n_archetypes)]
    return list(ARCHETYPES[:n_archetypes]) + extra


def _cdf(weights: np.ndarray) -> np.ndarray:
    """Row-wise CDF of non-negative weights [n_rows, n_cols] -> float64, each row ending at exactly 1."""
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    return cdf


def _sample_rows(cdf: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column per draw from the CDF row of each draw.

    cdf: float64 [n_rows, n_cols] from _cdf; rows: int [n] -> int64 [n] in [0, n_cols).
    """
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()  # rows stacked on one increasing axis
    idx = np.searchsorted(flat, rng.random(rows.shape[0]) + rows, side="right") - rows * n_cols
    return np.minimum(idx, n_cols - 1)


def _catalogue(
    config: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items: category int64 [n_items] (every category used), price float64 [n_items], Zipf popularity."""
    n_items, n_cat = config.n_items, config.n_categories
    size_weights = rng.dirichlet(np.full(n_cat, 2.0))
    category = rng.permutation(
        np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_items - n_cat, p=size_weights)])
    )
    base_price = rng.lognormal(np.log(20.0), 0.4, n_cat)
    price = np.maximum(np.round(base_price[category] * rng.lognormal(0.0, 0.6, n_items), 2), 0.5)
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = 1.0 / np.arange(1, n_items + 1)
    return category, price, popularity


def _category_preferences(
    n_archetypes: int, n_cat: int, overlap: float, rng: np.random.Generator
) -> np.ndarray:
    """float64 [n_archetypes, n_categories]: a few favourite categories (disjoint when there are enough), but
    round(2 * overlap * n_archetypes) archetypes take another archetype's top category as their last one."""
    n_fav = min(len(FAVOURITE_CATEGORY_WEIGHTS), n_cat)
    if n_archetypes * n_fav <= n_cat:
        favourites = rng.permutation(n_cat)[: n_archetypes * n_fav].reshape(n_archetypes, n_fav)
    else:
        favourites = np.argsort(rng.random((n_archetypes, n_cat)), axis=1)[:, :n_fav]
    if n_fav >= 2 and n_archetypes >= 2:
        sharing = rng.permutation(n_archetypes)[: round(2 * overlap * n_archetypes)]
        partner = (sharing + rng.integers(1, n_archetypes, sharing.size)) % n_archetypes
        favourites[sharing, -1] = favourites[partner, 0]
    weights = np.asarray(FAVOURITE_CATEGORY_WEIGHTS[:n_fav])
    pref = np.full((n_archetypes, n_cat), (1.0 - weights.sum()) / n_cat)
    np.add.at(pref, (np.arange(n_archetypes)[:, None], favourites), weights)
    return pref / pref.sum(axis=1, keepdims=True)


def _item_weights(
    specs: list[Archetype],
    category: np.ndarray,
    price: np.ndarray,
    popularity: np.ndarray,
    cat_pref: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """float64 [n_archetypes, n_items]: P(item | archetype) = P(category) * archetype Zipf within category.

    Within a category each archetype ranks items in its own random order (Zipf by rank), tilted by global
    popularity and by the archetype's price preference.
    """
    n_arch, n_cat = cat_pref.shape
    order = np.argsort(category[None, :] + rng.random((n_arch, category.size)), axis=1)  # grouped by category
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.broadcast_to(np.arange(category.size), order.shape), axis=1)
    first = np.concatenate([[0], np.cumsum(np.bincount(category, minlength=n_cat))[:-1]])
    rank = position - first[category]  # 0 = the archetype's top item of that category
    log_price = np.log(price)
    cat_mean = np.bincount(category, log_price, n_cat) / np.bincount(category, minlength=n_cat)
    z_price = (log_price - cat_mean[category]) / 0.6
    tilt = np.array([s.price_pref for s in specs])[:, None] * z_price
    w = popularity[None, :] ** 0.6 * (rank + 1.0) ** -1.1 * np.exp(tilt - tilt.max(axis=1, keepdims=True))
    group = (np.arange(n_arch)[:, None] * n_cat + category[None, :]).ravel()
    total = np.bincount(group, w.ravel(), n_arch * n_cat).reshape(n_arch, n_cat)
    return cat_pref[:, category] * w / total[:, category]


def _hour_weights(specs: list[Archetype]) -> np.ndarray:
    """float64 [n_archetypes, 24]: von Mises-like bump around each archetype's peak hour."""
    angle = 2 * np.pi * (np.arange(24)[None, :] - np.array([s.hour_peak for s in specs])[:, None]) / 24
    return np.exp(np.array([s.hour_focus for s in specs])[:, None] * np.cos(angle)) + 0.05


def _customers(
    config: SyntheticConfig, specs: list[Archetype], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per customer [n_customers]: archetype (the main one), second archetype and its weight mix in [0, 0.5],
    active window [start, end) in days, trend, churned, n_events (>= 1)."""
    n, days, n_arch = config.n_customers, float(config.days), len(specs)
    share = np.array([s.share for s in specs])
    archetype = rng.choice(n_arch, n, p=share / share.sum())
    second = (archetype + rng.integers(1, max(n_arch, 2), n)) % n_arch  # another one (itself when alone)
    mix = _mix_weights(config.overlap, n, rng)
    start = np.where(rng.random(n) < 0.6, 0.0, rng.uniform(0.0, 0.8 * days, n))  # 40% join during the span
    churned = rng.random(n) < np.array([s.churn for s in specs])[archetype]
    end = np.where(churned, start + (days - start) * rng.uniform(0.2, 0.9, n), days)
    trend = np.array([s.trend for s in specs])[archetype] + rng.normal(0.0, 0.2, n)
    trend = np.where(np.abs(trend) < 1e-6, 1e-6, trend)
    # intensity rate * exp(trend * t / days), integrated over [start, end)
    exposure = days / trend * (np.exp(trend * end / days) - np.exp(trend * start / days))
    sigma = 1.0
    rate = np.array([s.rate for s in specs])[archetype] * rng.lognormal(-(sigma**2) / 2, sigma, n)
    expected = rate * exposure
    light = rng.random(n) < config.light_share
    light_events = rng.choice(LIGHT_EVENTS.size, n, p=LIGHT_EVENTS / LIGHT_EVENTS.sum()) + 1
    regular_total = max(config.mean_events * n - light_events[light].sum(), float((~light).sum()))
    expected *= regular_total / max(expected[~light].sum(), 1e-12)
    n_events = np.where(light, light_events, np.maximum(rng.poisson(expected), 1))
    return dict(
        archetype=archetype,
        second=second,
        mix=mix,
        start=start,
        end=end,
        trend=trend,
        churned=churned,
        n_events=n_events,
    )


def _mix_weights(overlap: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 [n]: weight of each customer's second archetype, Beta-distributed in [0, 0.5] with mean overlap."""
    if overlap <= 0.0 or overlap >= 0.5:
        return np.full(n, min(max(overlap, 0.0), 0.5))
    mean = 2.0 * overlap  # of the Beta before halving
    return 0.5 * rng.beta(4.0 * mean, 4.0 * (1.0 - mean), n)


def _item_rows(
    customer: np.ndarray,
    cust: dict[str, np.ndarray],
    popular_share: float,
    n_archetypes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Row of the item CDF (one row per archetype, then global popularity) for each draw int64 [n], customer:
    int [n]: the popularity row n_archetypes with probability popular_share, else the customer's second
    archetype with its mix weight, else its main archetype."""
    second = rng.random(customer.size) < cust["mix"][customer]
    row = np.where(second, cust["second"][customer], cust["archetype"][customer])
    return np.where(rng.random(customer.size) < popular_share, n_archetypes, row)


def _session_positions(counts: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative position in [0, 1) of each session in its customer's window: a renewal process with
    gamma(shape) gaps (regular when shape > 1, bursty when < 1) conditioned on the session count.

    counts: int64 [n_customers] sessions per customer; shape: per customer.
    """
    n_gaps = counts + 1  # one trailing gap so the last session does not sit at the end
    gap_owner = np.repeat(np.arange(counts.size), n_gaps)
    gaps = rng.gamma(shape[gap_owner], 1.0)
    cum = np.cumsum(gaps)
    first = np.cumsum(n_gaps) - n_gaps
    before = cum[first] - gaps[first]
    total = cum[first + n_gaps - 1] - before
    position = (cum - before[gap_owner]) / total[gap_owner]
    keep = np.ones(gaps.size, bool)
    keep[first + n_gaps - 1] = False
    return np.minimum(position[keep], np.nextafter(1.0, 0.0))


def _sessions(
    cust: dict[str, np.ndarray], specs: list[Archetype], days: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Split each customer's events into sessions and place the sessions in time.

    Returns event -> session int64 [n_events] (non-decreasing) and per session [n_sessions]: customer,
    archetype, time (float days from start), channel, converts (bool; fades before a churn).
    """
    arch = cust["archetype"]
    n_events = cust["n_events"]
    event_customer = np.repeat(np.arange(n_events.size), n_events)
    session_len = np.array([s.session_len for s in specs])[arch][event_customer]
    new_session = rng.random(event_customer.size) < 1.0 / session_len
    new_session[np.cumsum(n_events) - n_events] = True
    event_session = np.cumsum(new_session) - 1
    customer = event_customer[new_session]
    counts = np.bincount(customer, minlength=n_events.size)
    shape = np.array([s.gap_shape for s in specs])[arch]
    position = _session_positions(counts, shape, rng)
    b, start, end = cust["trend"][customer], cust["start"][customer], cust["end"][customer]
    lo, hi = np.exp(b * start / days), np.exp(b * end / days)
    time = days / b * np.log(lo + position * (hi - lo))  # inverse CDF of the trending intensity
    active = np.clip((time - start) / np.maximum(end - start, 1e-9), 0.0, 1.0)
    fade = np.where(cust["churned"][customer], 1.0 - 0.85 * np.clip((active - 0.6) / 0.4, 0.0, 1.0), 1.0)
    session_arch = arch[customer]
    channel_cdf = _cdf(np.array([s.channels for s in specs]))
    converts = rng.random(customer.size) < np.array([s.conversion for s in specs])[session_arch] * fade
    sessions = dict(
        customer=customer,
        time=time,
        channel=_sample_rows(channel_cdf, session_arch, rng),
        converts=converts,
        archetype=session_arch,
    )
    return event_session, sessions


def _session_timestamps(
    sessions: dict[str, np.ndarray], specs: list[Archetype], start_s: int, rng: np.random.Generator
) -> np.ndarray:
    """int64 [n_sessions] epoch seconds: the session's day, an hour from the archetype's daily pattern."""
    hour = _sample_rows(_cdf(_hour_weights(specs)), sessions["archetype"], rng)
    second = np.floor(sessions["time"]).astype(np.int64) * SECONDS_PER_DAY + hour * 3600
    return start_s + second + rng.integers(0, 3600, hour.size)


def _event_times(
    event_session: np.ndarray, session_ts: np.ndarray, span_s: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Event timestamps int64 [n_events] in [span_s): session start plus exponential gaps (mean 75 s) between
    its events, a session running past the end moved a day earlier; and each session's first event index."""
    first = np.searchsorted(event_session, np.arange(session_ts.size))
    gaps = rng.exponential(75.0, event_session.size)
    gaps[first] = 0.0
    within = np.cumsum(gaps)
    within = (within - within[first][event_session]).astype(np.int64)
    earlier = session_ts - SECONDS_PER_DAY
    overflow = (session_ts + np.maximum.reduceat(within, first) >= span_s[1]) & (earlier >= span_s[0])
    session_ts = np.where(overflow, earlier, session_ts)
    return np.minimum(session_ts[event_session] + within, span_s[1] - 1), first


def _funnel(
    event_session: np.ndarray, first: np.ndarray, sessions: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Event type int8 [n_events]: views; a converting session ends cart -> purchase (no cart in a store),
    a quarter of the others end with an abandoned cart."""
    n = event_session.size
    k = np.arange(n) - first[event_session]  # position in the session
    length = np.diff(np.append(first, n))[event_session]
    converts = sessions["converts"][event_session]
    abandons = (~sessions["converts"] & (rng.random(first.size) < 0.25))[event_session]
    last, second_last = k == length - 1, (k == length - 2) & (sessions["channel"][event_session] != STORE)
    event_type = np.full(n, VIEW, np.int8)
    event_type[last & abandons] = CART
    event_type[second_last & converts] = CART
    event_type[last & converts] = PURCHASE
    return event_type


def _items(
    event_type: np.ndarray,
    customer: np.ndarray,
    archetype: np.ndarray,
    item_row: np.ndarray,
    favourites: np.ndarray,
    item_cdf: np.ndarray,
    specs: list[Archetype],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Item int64 [n_events] (a personal favourite or a draw from item_cdf's row item_row, see _item_rows) and
    quantity int64 [n_events]; a cart right before a purchase holds the purchased item and quantity.

    archetype: the main archetype of each event's customer, int [n_events]: favourite share, quantity."""
    n = event_type.size
    fav_share = np.array([s.favourite_share for s in specs])[archetype] * np.where(
        event_type == VIEW, 0.5, 1.0
    )
    own = favourites[customer, rng.integers(0, favourites.shape[1], n)]
    item = np.where(rng.random(n) < fav_share, own, _sample_rows(item_cdf, item_row, rng))
    quantity = 1 + rng.poisson(np.array([s.quantity for s in specs])[archetype] - 1.0)
    quantity[event_type == VIEW] = 1
    bought = np.flatnonzero(event_type[1:] == PURCHASE) + 1
    paired = bought[(event_type[bought - 1] == CART) & (customer[bought - 1] == customer[bought])]
    item[paired - 1], quantity[paired - 1] = item[paired], quantity[paired]
    return item, quantity.astype(np.int64)


def _returns(
    event_type: np.ndarray,
    ts: np.ndarray,
    archetype: np.ndarray,
    specs: list[Archetype],
    end_s: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Returned purchases: their event index int64 [n_returns] and the return time (1 + ~6 days later)."""
    rate = np.array([s.return_rate for s in specs])[archetype]
    src = np.flatnonzero((event_type == PURCHASE) & (rng.random(event_type.size) < rate))
    ret_ts = ts[src] + ((1.0 + rng.exponential(6.0, src.size)) * SECONDS_PER_DAY).astype(np.int64)
    inside = ret_ts < end_s
    return src[inside], ret_ts[inside]


def _events(
    config: SyntheticConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
    """All columns as arrays [n_events] (returns appended, unsorted), customer archetypes [n_customers], specs."""
    specs = archetype_specs(config.n_archetypes, rng)
    category, price, popularity = _catalogue(config, rng)
    cat_pref = _category_preferences(len(specs), config.n_categories, config.overlap, rng)
    archetype_items = _item_weights(specs, category, price, popularity, cat_pref, rng)
    item_cdf = _cdf(np.vstack([archetype_items, popularity / popularity.sum()]))  # last row: popularity
    cust = _customers(config, specs, rng)
    arch = cust["archetype"]
    owner = np.repeat(np.arange(config.n_customers), N_FAVOURITE_ITEMS)
    owner_rows = _item_rows(owner, cust, config.popular_share, len(specs), rng)
    favourites = _sample_rows(item_cdf, owner_rows, rng).reshape(-1, N_FAVOURITE_ITEMS)
    event_session, sessions = _sessions(cust, specs, config.days, rng)
    start_s = int(np.datetime64(config.start, "s").astype(np.int64))
    end_s = start_s + config.days * SECONDS_PER_DAY
    session_ts = _session_timestamps(sessions, specs, start_s, rng)
    ts, first = _event_times(event_session, session_ts, (start_s, end_s), rng)
    customer = sessions["customer"][event_session]
    event_arch = arch[customer]
    event_type = _funnel(event_session, first, sessions, rng)
    item_row = _item_rows(customer, cust, config.popular_share, len(specs), rng)
    item, quantity = _items(event_type, customer, event_arch, item_row, favourites, item_cdf, specs, rng)
    amount = np.round(np.where(event_type == PURCHASE, price[item] * quantity, price[item]), 2)
    src, ret_ts = _returns(event_type, ts, event_arch, specs, end_s, rng)
    channel = sessions["channel"][event_session]
    columns = dict(
        customer=np.concatenate([customer, customer[src]]),
        ts=np.concatenate([ts, ret_ts]),
        event_type=np.concatenate([event_type, np.full(src.size, RETURN, np.int8)]),
        item=np.concatenate([item, item[src]]),
        amount=np.concatenate([amount, -amount[src]]),
        quantity=np.concatenate([quantity, quantity[src]]),
        channel=np.concatenate([channel, channel[src]]),
    )
    columns["category"] = category[columns["item"]]
    return columns, arch, specs


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """Arrow strings prefix + zero-padded 0..n-1, e.g. c0000123."""
    digits = pc.utf8_lpad(
        pa.array(np.arange(n)).cast(pa.string()), width=max(width, len(str(n - 1))), padding="0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def generate(config: SyntheticConfig) -> tuple[pa.Table, pa.Table]:
    """Generate (events, archetypes) deterministically from config.seed.

    events: customer_id string ("c0000123"), ts timestamp[s, UTC] in [start, start+days), event_type string
    (view/cart/purchase/return), item_id string ("i00042"), category string ("cat07"), amount float64 (item
    price for view/cart, price*quantity for purchase, negative for return), quantity int64 >= 1, channel
    string (web/app/store/email); sorted by ts. archetypes: customer_id string, archetype int32,
    archetype_name string; one row per customer.
    """
    _check(config)
    columns, arch, specs = _events(config, np.random.default_rng(config.seed))
    order = np.argsort(columns["ts"], kind="stable")
    customer_ids = _ids("c", config.n_customers, 7)
    names = pa.array([s.name for s in specs])
    events = pa.table(
        {
            "customer_id": customer_ids.take(columns["customer"][order]),
            "ts": pa.array(columns["ts"][order], pa.timestamp("s", tz="UTC")),
            "event_type": pa.array(EVENT_TYPES).take(columns["event_type"][order]),
            "item_id": _ids("i", config.n_items, 5).take(columns["item"][order]),
            "category": _ids("cat", config.n_categories, 2).take(columns["category"][order]),
            "amount": pa.array(columns["amount"][order], pa.float64()),
            "quantity": pa.array(columns["quantity"][order], pa.int64()),
            "channel": pa.array(CHANNELS).take(columns["channel"][order]),
        }
    )
    archetypes = pa.table(
        {
            "customer_id": customer_ids,
            "archetype": pa.array(arch, pa.int32()),
            "archetype_name": names.take(arch),
        }
    )
    return events, archetypes


def _check(config: SyntheticConfig) -> None:
    """Raise ValueError naming the first out-of-range field."""
    checks = [
        ("n_customers", config.n_customers >= 1, ">= 1"),
        ("n_archetypes", config.n_archetypes >= 1, ">= 1"),
        ("n_categories", config.n_categories >= 1, ">= 1"),
        ("days", config.days >= 1, ">= 1"),
        ("n_items", config.n_items >= config.n_categories, ">= n_categories"),
        ("mean_events", config.mean_events >= 2, ">= 2"),
        ("overlap", 0.0 <= config.overlap <= 0.5, "in [0, 0.5]"),
        ("light_share", 0.0 <= config.light_share < 1.0, "in [0, 1)"),
        ("popular_share", 0.0 <= config.popular_share <= 1.0, "in [0, 1]"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(
                f"SyntheticConfig.{name}={getattr(config, name)!r} is out of range (expected {expected})"
            )
    try:
        np.datetime64(config.start, "s")
    except ValueError as err:
        raise ValueError(f"SyntheticConfig.start={config.start!r} is not an ISO 8601 date") from err


def summary(events: pa.Table, archetypes: pa.Table) -> str:
    """One line: customers, events, archetype shares."""
    names, counts = np.unique(archetypes["archetype_name"].to_numpy(zero_copy_only=False), return_counts=True)
    shares = ", ".join(
        f"{name} {count / archetypes.num_rows:.0%}" for name, count in zip(names, counts, strict=True)
    )
    return f"{archetypes.num_rows} customers, {events.num_rows} events; archetypes: {shares}"


def _write_table(table: pa.Table, path: Path, csv: bool) -> None:
    if csv:
        ts = pc.strftime(table["ts"], format="%Y-%m-%dT%H:%M:%SZ")
        pa_csv.write_csv(table.set_column(table.schema.get_field_index("ts"), "ts", ts), path)
    else:
        pq.write_table(table, path)


def write(config: SyntheticConfig, out_dir: str | Path, n_files: int = 1, *, csv: bool = False) -> Path:
    """Generate and write out_dir/events.parquet (or out_dir/events/events-00000.parquet ... when n_files > 1,
    consecutive time ranges) and out_dir/archetypes.parquet. csv=True writes the events as CSV with ISO 8601
    timestamps instead. Returns the events file, or the directory of parts, to pass as data.path."""
    if n_files < 1:
        raise ValueError(f"n_files={n_files} is out of range (expected >= 1)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events, archetypes = generate(config)
    suffix = "csv" if csv else "parquet"
    pq.write_table(archetypes, out_dir / "archetypes.parquet")
    if n_files == 1:
        path = out_dir / f"events.{suffix}"
        _write_table(events, path, csv)
    else:
        path = out_dir / "events"
        path.mkdir(exist_ok=True)
        bounds = np.linspace(0, events.num_rows, n_files + 1).astype(np.int64)
        for part, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            _write_table(events.slice(lo, hi - lo), path / f"events-{part:05d}.{suffix}", csv)
    log.info("wrote %s: %s", path, summary(events, archetypes))
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=SyntheticConfig.n_customers)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    parser.add_argument("--days", type=int, default=SyntheticConfig.days)
    parser.add_argument("--start", default=SyntheticConfig.start)
    parser.add_argument("--mean-events", type=float, default=SyntheticConfig.mean_events)
    parser.add_argument("--archetypes", type=int, default=SyntheticConfig.n_archetypes)
    parser.add_argument("--items", type=int, default=SyntheticConfig.n_items)
    parser.add_argument("--categories", type=int, default=SyntheticConfig.n_categories)
    parser.add_argument("--overlap", type=float, default=SyntheticConfig.overlap)
    parser.add_argument("--light-share", type=float, default=SyntheticConfig.light_share)
    parser.add_argument("--popular-share", type=float, default=SyntheticConfig.popular_share)
    parser.add_argument("--files", type=int, default=1, help="split the events into this many Parquet parts")
    parser.add_argument("--csv", action="store_true", help="write events as CSV instead of Parquet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = SyntheticConfig(
        n_customers=args.customers,
        n_archetypes=args.archetypes,
        n_items=args.items,
        n_categories=args.categories,
        start=args.start,
        days=args.days,
        mean_events=args.mean_events,
        overlap=args.overlap,
        light_share=args.light_share,
        popular_share=args.popular_share,
        seed=args.seed,
    )
    return write(config, args.out, args.files, csv=args.csv)


if __name__ == "__main__":
    main()
