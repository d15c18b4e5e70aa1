"""The seed-signature lookalike on a constructed base: it finds what the seeds share and ranks its other
holders first, and the encoder's direction orders what the bags leave tied; the customer vector
(engine.represent) is unit-norm, separates value, and round-trips."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.data.store import build_store
from engine.index import signature
from engine.index import tuning as tuning_
from engine.represent import Representation

DAY = 86400
T0 = 1_700_006_400


def base(n: int = 400, seed: int = 0, caviar: bool = False):
    """n customers buying 30 common items at random; customers 0..39 also buy the niche item "wine"
    (a quarter of them, 0..9, are the seeds in the tests); customers 300.. spend ten times more. With
    ``caviar``, customer 0 and four customers past 40 buy "caviar", which nobody else does."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):  # a loop over the customers of a tiny test base
        for _ in range(rng.integers(5, 15)):
            day = rng.uniform(0, 120)
            price = 10.0 if c >= 300 else 1.0
            rows.append((f"c{c:03d}", day, f"item{rng.integers(30)}", "common", price))
        if c < 40:
            rows += [(f"c{c:03d}", rng.uniform(0, 120), "wine", "wine", 8.0) for _ in range(3)]
        if caviar and c in (0, 50, 60, 70, 80):
            rows += [(f"c{c:03d}", rng.uniform(0, 120), "caviar", "caviar", 30.0) for _ in range(3)]
    customer, day, item, category, amount = zip(*rows, strict=True)
    table = pa.table({
        "customer_id": pa.array(customer, pa.string()),
        "ts": pa.array(T0 + (np.array(day) * DAY).astype(np.int64)),
        "event_type": pa.array(["purchase"] * len(rows), pa.string()),
        "item_id": pa.array(item, pa.string()), "category": pa.array(category, pa.string()),
        "channel": pa.array(["store"] * len(rows), pa.string()),
        "amount": pa.array(amount, pa.float64()), "quantity": pa.array([1.0] * len(rows), pa.float64()),
    })
    return build_store(table, ["purchase"], ["return"])[0], T0 + 121 * DAY


def test_the_signature_is_what_the_seeds_share_and_its_holders_rank_first():
    store, as_of = base()
    features = signature.SignatureFeatures.from_store(store, as_of)
    seeds = store.customer_index([f"c{c:03d}" for c in range(10)])
    scores = signature.scores(features, seeds)
    others = np.setdiff1d(np.arange(store.n_customers), seeds)
    top = others[np.argsort(-scores[others], kind="stable")[:30]]
    holders = set(store.customer_index([f"c{c:03d}" for c in range(10, 40)]).tolist())
    assert set(top.tolist()) == holders
    explained = signature.explain(features, seeds, top=2)
    assert {e["feature"] for e in explained} <= {"item:wine", "category:wine", "recent item:wine",
                                                 "recent category:wine"}
    assert all(e["seed_mean"] > e["base_mean"] for e in explained)


def test_what_one_seed_alone_holds_does_not_sign_the_list():
    """caviar is far rarer in the base than among the seeds (one of ten), so its z-score is high; held by
    fewer than a fifth of the seeds, it does not sign, and its holders do not jump the queue behind the wine
    buyers as they do without the floor."""
    store, as_of = base(caviar=True)
    features = signature.SignatureFeatures.from_store(store, as_of)
    seeds = store.customer_index([f"c{c:03d}" for c in range(10)])
    caviar = store.customer_index([f"c{c:03d}" for c in (50, 60, 70, 80)])
    others = np.setdiff1d(np.arange(store.n_customers), seeds)

    def places(support: float) -> np.ndarray:  # the caviar holders' places among the non-seeds, 0 = first
        scores = signature.scores(features, seeds, signature.Weights(top=10), support=support)
        order = others[np.argsort(-scores[others], kind="stable")]
        return np.flatnonzero(np.isin(order, caviar))

    unfloored = signature.signature(features, seeds, top=10, support=0.0)[0]
    assert any("caviar" in features.names[c] for c in unfloored), "the case tests nothing without the floor"
    assert (places(0.0) < 40).sum() >= 3  # right behind the 30 wine buyers
    assert places(signature.SUPPORT).min() >= 45
    explained = signature.explain(features, seeds, top=10)
    assert explained and not any("caviar" in e["feature"] for e in explained), explained


def test_a_single_seed_signs_alone_and_two_seeds_must_share():
    store, as_of = base(caviar=True)
    features = signature.SignatureFeatures.from_store(store, as_of)
    one = store.customer_index(["c000"])
    assert any("caviar" in features.names[c] for c in signature.signature(features, one, top=10)[0])
    two = store.customer_index(["c000", "c001"])  # both buy wine; only c000 caviar
    names = [features.names[c] for c in signature.signature(features, two, top=10)[0]]
    assert "item:wine" in names and not any("caviar" in n for n in names), names


def test_no_seed_or_every_customer_a_seed_is_refused():
    store, as_of = base(60)
    features = signature.SignatureFeatures.from_store(store, as_of)
    with pytest.raises(ValueError, match="at least one seed"):
        signature.scores(features, np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="every customer is a seed"):
        signature.scores(features, np.arange(store.n_customers))


def test_the_customer_vector_is_unit_norm_separates_value_and_round_trips(tmp_path):
    store, as_of = base()
    rep = Representation.fit(store, as_of, horizon_days=30, factors=8)
    sequence = np.random.default_rng(0).normal(size=(store.n_customers, 16)).astype(np.float32)
    sequence /= np.linalg.norm(sequence, axis=1, keepdims=True)
    v = rep.transform(store, as_of, sequence)
    assert v.shape == (store.n_customers, 2 + 16 + 8)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    big = store.customer_index([f"c{c:03d}" for c in range(300, 400)])
    small = np.setdiff1d(np.arange(store.n_customers), big)
    angle = np.arctan2(v[:, 1], v[:, 0])  # the value coordinate: 0 = nothing expected, pi = the top
    assert angle[big].mean() > angle[small].mean() + 1.0
    assert rep.expected_spend(store, as_of)[big].mean() > 5 * rep.expected_spend(store, as_of)[small].mean()
    again = Representation.load(rep.save(tmp_path / "representation.npz"))
    assert np.array_equal(again.transform(store, as_of, sequence), v)


def test_the_value_blends_in_the_forecast_and_places_the_low_end_by_expected_log_spend(tmp_path):
    """With the forecast's answer the value is the mean of the ridge's sqrt spend and the forecast's; the
    linear+log position is half the value's linear place and half the expected log spend (a second ridge's
    and the forecast's p_buy x log1p(spend / p_buy)), so a customer unlikely to buy sits below one of the same
    expected spend who surely buys; a bundle written before either loads as the ridge alone, linear."""
    store, as_of = base()
    linear = Representation.fit(store, as_of, horizon_days=30, factors=8, value_scale="linear")
    ridge = linear.value(store, as_of)
    rng = np.random.default_rng(2)
    forecast = {"expected_spend": rng.gamma(2.0, 20.0, store.n_customers), "p_buy": rng.uniform(0.05, 1.0, store.n_customers)}
    rep = Representation.fit(store, as_of, horizon_days=30, factors=8, forecast=forecast)
    value = rep.value(store, as_of, forecast)
    assert np.allclose(value, 0.5 * (ridge + np.sqrt(forecast["expected_spend"])))
    with pytest.raises(ValueError, match="forecast's answer over 30 days"):
        rep.value(store, as_of)
    position = rep.position(store, as_of, value, forecast)
    assert position.min() >= 0 and position.max() <= 1
    unlikely = {"expected_spend": forecast["expected_spend"], "p_buy": np.full(store.n_customers, 0.05)}
    certain = {"expected_spend": forecast["expected_spend"], "p_buy": np.ones(store.n_customers)}
    assert (rep.position(store, as_of, value, unlikely) <= rep.position(store, as_of, value, certain)).all()
    assert np.mean(rep.position(store, as_of, value, unlikely) < rep.position(store, as_of, value, certain)) > 0.9
    sequence = np.random.default_rng(0).normal(size=(store.n_customers, 16)).astype(np.float32)
    again = Representation.load(rep.save(tmp_path / "representation.npz"))
    assert np.array_equal(again.transform(store, as_of, sequence, forecast=forecast),
                          rep.transform(store, as_of, sequence, forecast=forecast))
    with np.load(linear.save(tmp_path / "old.npz")) as z:  # as written before value_blend and the log part
        old = {k: z[k] for k in z.files if k not in ("value_blend", "value_log", "log_coef", "log_range")}
    np.savez(tmp_path / "old.npz", **old)
    before = Representation.load(tmp_path / "old.npz")
    assert np.array_equal(before.transform(store, as_of, sequence), linear.transform(store, as_of, sequence))
    with pytest.raises(ValueError, match="value_scale"):
        Representation.fit(store, as_of, horizon_days=30, factors=8, value_scale="cubic")


def test_the_encoder_part_of_the_hybrid_vector_is_the_encoders_direction_and_orders_ties():
    """The service reads the encoder's part back from the bundle's hybrid vectors (no second copy): each row
    is the customer's encoder embedding, rescaled. Where the bags say little (shoppers of the same common
    items), the vector term moves the customers near the seeds' centroid in the encoder's space up."""
    store, as_of = base()
    rep = Representation.fit(store, as_of, horizon_days=30, factors=8)
    rng = np.random.default_rng(1)
    sequence = rng.normal(size=(store.n_customers, 16)).astype(np.float32)
    sequence /= np.linalg.norm(sequence, axis=1, keepdims=True)
    part = rep.sequence_part(rep.transform(store, as_of, sequence))
    assert part.shape == sequence.shape
    unit = part / np.linalg.norm(part, axis=1, keepdims=True)
    assert np.allclose(unit, sequence, atol=1e-5)

    features = signature.SignatureFeatures.from_store(store, as_of)
    wine = store.customer_index([f"c{c:03d}" for c in range(40)])
    common = np.setdiff1d(np.arange(300), wine)  # cheap shoppers of the common items only
    seeds, near = common[:10], common[10:20]
    direction = rng.normal(size=16)
    sequence[np.r_[seeds, near]] = direction + 0.1 * rng.normal(size=(20, 16))  # one taste the bags miss
    plain = signature.scores(features, seeds)
    scored = signature.scores(features, seeds, vectors=sequence)
    others = np.setdiff1d(np.arange(store.n_customers), seeds)
    place = {name: np.argsort(np.argsort(-s[others], kind="stable")) for name, s in (("plain", plain),
                                                                                   ("scored", scored))}
    rows = np.searchsorted(others, near)
    assert (place["scored"][rows] < place["plain"][rows]).all()  # each of them moves up, a tenth of the way
    assert np.median(place["plain"][rows] - place["scored"][rows]) >= 10
    assert np.array_equal(signature.scores(features, seeds, vectors=sequence, vector_weight=0.0), plain)


def test_a_log_too_short_for_the_value_model_says_so():
    store, as_of = base(40)
    with pytest.raises(ValueError, match="forecast.horizon_days"):
        Representation.fit(store, as_of, horizon_days=400)


def test_tuning_weighs_the_parts_on_the_history_alone():
    """The last quarter of the 121 days (30) is held back: the common items and wine bought in it are the
    tasks, the weights chosen find their buyers at least as well as the untuned ones, and a bundle's features
    carry exactly the factorisations its weights read."""
    store, as_of = base()
    tuning = tuning_.tune(store, as_of)
    assert tuning.window_days == pytest.approx(121 / 4, abs=0.5) and tuning.customers == store.n_customers
    assert tuning.tasks >= tuning_.TUNE_MIN_TASKS
    assert tuning.roc_auc >= tuning.default_roc_auc > 0.5
    assert tuning.weights in (signature.Weights(), *tuning_.TUNE_GRID)
    assert signature.Weights.from_dict(tuning.to_dict()["weights"]) == tuning.weights

    seeds = store.customer_index([f"c{c:03d}" for c in range(10)])
    plain = signature.SignatureFeatures.from_store(store, as_of, weights=signature.Weights())
    assert plain.profile is None and plain.lowrank is None
    with pytest.raises(ValueError, match="profile part 0.2 but the features were built without it"):
        signature.scores(plain, seeds, signature.Weights(profile=0.2))
    full = signature.SignatureFeatures.from_store(store, as_of, weights=None)
    assert len(full.profile) == store.n_customers and np.allclose(np.linalg.norm(full.profile, axis=1), 1, atol=1e-4)
    assert full.lowrank[0].shape == (store.n_customers, signature.LOWRANK_RANK)
    scored = signature.scores(full, seeds, signature.Weights(top=10, profile=0.2, lowrank=0.2))
    others = np.setdiff1d(np.arange(store.n_customers), seeds)
    first = others[np.argsort(-scored[others], kind="stable")[:30]]
    assert np.isin(first, np.arange(10, 40)).mean() >= 0.9  # with every part weighed, the wine buyers still lead
    for bad in ({"top": 3, "vector": 0.1}, {"top": 0}, {"top": 3, "profile": -0.1}, {"regression": "0.2"}):
        with pytest.raises(ValueError, match="lookalike weights"):
            signature.Weights.from_dict(bad)


def test_a_history_too_short_to_hold_a_window_back_keeps_the_default_weights():
    store, as_of = base()
    short = store.after(as_of - 20 * DAY)
    tuning = tuning_.tune(short, as_of)
    assert tuning.weights == signature.Weights() and "too short" in tuning.reason and tuning.roc_auc is None


def test_tuning_keeps_the_untuned_weights_where_no_weighting_leads_by_more_than_luck():
    """Random purchases of 30 items in 6 categories: whatever weighting leads on the held-back window leads by
    chance, and the untuned weights stay."""
    rng = np.random.default_rng(0)
    rows = [(f"c{c:03d}", rng.uniform(0, 120), f"item{rng.integers(30)}", f"cat{rng.integers(6)}")
            for c in range(400) for _ in range(rng.integers(5, 15))]
    customer, day, item, category = zip(*rows, strict=True)
    table = pa.table({
        "customer_id": pa.array(customer, pa.string()), "ts": pa.array(T0 + (np.array(day) * DAY).astype(np.int64)),
        "event_type": pa.array(["purchase"] * len(rows), pa.string()), "item_id": pa.array(item, pa.string()),
        "category": pa.array(category, pa.string()), "channel": pa.array(["store"] * len(rows), pa.string()),
        "amount": pa.array([1.0] * len(rows), pa.float64()), "quantity": pa.array([1.0] * len(rows), pa.float64()),
    })
    tuning = tuning_.tune(build_store(table, ["purchase"], ["return"])[0], T0 + 121 * DAY)
    assert tuning.tasks >= tuning_.TUNE_MIN_TASKS
    assert tuning.weights == signature.UNTUNED and "standard errors" in tuning.reason
    assert tuning.roc_auc == tuning.default_roc_auc
