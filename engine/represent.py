"""The customer vector the bundle serves: the sequence encoder's embedding beside item-profile factors and a
value coordinate, one L2-normalised vector per customer.

On real shop logs the sequence state alone loses to a bag of items (it reads the last events only, and its
contrastive objective does not see value). The hybrid vector keeps it and adds what it misses:

- **item profile**: a truncated SVD (scikit-learn's randomized SVD) of the customer x (item, category) TF-IDF
  matrix of purchases, over the whole history: what a customer buys;
- **value**: the square root of the expected spend over the next ``horizon_days``: from a ridge regression
  of it on recent and lifetime spend and purchase counts, fitted by replaying the history (features as of
  ``as_of - horizon``, target the spend after it), and, with ``value="ridge+forecast"`` (the default when
  the model has a forecasting head), the mean of that and the head's own (engine.forecast.process) over
  the same horizon: two predictors that err differently. It enters as a point on a half circle, so every
  vector keeps unit norm and cosine similarity (spherical k-means, the FAISS inner-product index) still
  applies:

      v = [sqrt(a) cos t, sqrt(a) sin t, sqrt(1 - a) b],  t = pi * position(value)

  where b is the unit behaviour vector (sequence embedding and profile factors, weighted) and a is
  ``value_weight``. Two customers of very different value are up to 2 sqrt(a) apart, whatever they buy.
  ``position`` is, with ``value_scale="linear+log"`` (the default), the mean of a linear and a log part,
  each in [0, 1]: value / value_q995, which separates the big spenders, and the customer's expected
  log1p(spend) over the horizon, which separates the many small and lapsing ones (a linear scale crowds
  them at 0, and a lapsing customer's expected log spend is low even when one big basket is possible). The
  expected log spend is a second ridge's (target log1p spend, the same replay) and, with the forecast, the
  mean of that and the head's p_buy x log1p(expected spend / p_buy); each is scaled to [0, 1] between its
  0.5th and 99.5th percentiles over the base. bench/quality.py, 3 seeds, segments at k=8, eta squared of
  log1p spend after the cutoff: Complete Journey 0.552 ± 0.006, generated log 0.582 ± 0.002, against 0.540
  and 0.537 with the ridge alone on a linear scale and 0.537 and 0.576 for 8 tiles of BG/NBD predicted
  spend (bench/segment_value.py has the other scales and weights tried).

Fitted on the training base (``fit``), saved as ``representation.npz`` (plain arrays, no pickle) and applied
to any store with the same vocabularies (``transform``), one customer at a time in the service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from engine.data.store import SequenceStore
from engine.data.summary import purchase_counts
from engine.forecast.baselines import future_truth

log = logging.getLogger(__name__)

FILE = "representation.npz"
DAY = 86400
SCALES = {"linear": 0.0, "log": 1.0, "linear+log": 0.5}  # represent.value_scale: the log scale's share
WINDOWS_DAYS = (14, 28, 56, 112)  # recent spend and purchase windows of the value model, plus the lifetime


def token_counts(store: SequenceStore, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """float32 [n_customers, n_items + n_categories] purchase counts (or summed ``weights``, one per event)
    of each known item and category; category columns follow the item columns."""
    return sp.hstack([purchase_counts(store, "item_id", weights), purchase_counts(store, "category", weights)],
                     format="csr")


def idf_weights(counts: sp.csr_matrix) -> np.ndarray:
    """float32 [n_tokens]: smoothed inverse document frequency, log((1 + n) / (1 + df)) + 1."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """float32 CSR: log1p(count x idf), each row L2-normalised (empty rows stay empty)."""
    t = counts.multiply(idf[None, :]).tocsr().astype(np.float32)
    t.data = np.log1p(t.data)
    norms = np.sqrt(np.asarray(t.multiply(t).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)).dot(t).tocsr()


def tfidf_histories(store: SequenceStore) -> sp.csr_matrix:
    """float32 [n_customers, n_items] L2-normalised TF-IDF of the items in each customer's history (every event
    type: the baseline as an analyst writes it)."""
    items = np.asarray(store.columns["item_id"]).astype(np.int64)
    known = items > 0
    counts = sp.csr_matrix((np.ones(known.sum(), np.float32), (store.customer_rows()[known], items[known])),
                           shape=(store.n_customers, len(store.vocabs["item_id"])))
    counts.sum_duplicates()
    return tfidf(counts, idf_weights(counts))


def value_features(store: SequenceStore, as_of: int) -> np.ndarray:
    """float64 [n, 2 len(WINDOWS_DAYS) + 4]: per window and the lifetime, sqrt(spend per day) and
    log1p(purchases) before ``as_of``; log1p days since the last purchase and since the first event."""
    ts = np.asarray(store.columns["ts"], dtype=np.int64)
    rows = store.customer_rows()
    n = store.n_customers
    purchase = store.is_purchase() & (ts < as_of)
    amount = np.nan_to_num(np.asarray(store.columns["amount"], dtype=np.float64), nan=0.0)
    # the store is sorted by customer, then time: a customer's first event is at its offset
    has = store.lengths() > 0
    start = np.append(ts, as_of)[np.where(has, store.offsets[:-1], len(ts))]
    first = np.where(start < as_of, start, as_of)
    tenure = np.maximum((as_of - first) / DAY, 1.0)
    cols = []
    for days in (*WINDOWS_DAYS, None):
        keep = purchase if days is None else purchase & (ts >= as_of - days * DAY)
        span = tenure if days is None else np.minimum(tenure, days)
        cols.append(np.sqrt(np.bincount(rows[keep], weights=amount[keep], minlength=n) / span))
        cols.append(np.log1p(np.bincount(rows[keep], minlength=n)))
    last = np.full(n, -1, dtype=np.int64)
    bought = np.flatnonzero(purchase)
    final = np.r_[rows[bought][1:] != rows[bought][:-1], True] if len(bought) else np.zeros(0, bool)
    last[rows[bought][final]] = ts[bought][final]  # each customer's last purchase before as_of
    since = np.where(last >= 0, as_of - last, as_of - first) / DAY
    cols += [np.log1p(np.maximum(since, 0.0)), np.log1p(tenure), (last >= 0).astype(np.float64)]
    return np.stack(cols, 1)


def value_inputs(store: SequenceStore, as_of: int, unknown: np.ndarray) -> np.ndarray:
    """value_features, then the store's customer attributes when the value model reads them (``unknown``,
    float32 [width], non-empty): the unknown row for a store without them (a new customer)."""
    x = value_features(store, as_of)
    if not len(unknown):
        return x
    attributes = store.attributes if store.attributes is not None else np.broadcast_to(unknown, (len(x), len(unknown)))
    return np.hstack([x, np.asarray(attributes, dtype=np.float64)])


def place(position: np.ndarray, behaviour: np.ndarray, value_weight: float) -> np.ndarray:
    """float32 [n, 2 + d] unit vectors [sqrt(a) cos t, sqrt(a) sin t, sqrt(1 - a) b] with t = pi x ``position``
    (float [n] in [0, 1], the value's place on the half circle), b = ``behaviour`` (float32 [n, d], unit rows
    or zeros) and a = ``value_weight``."""
    angle = np.pi * np.asarray(position, dtype=np.float64)
    out = np.hstack([np.sqrt(value_weight) * np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32),
                     np.sqrt(1.0 - value_weight) * behaviour])
    return np.ascontiguousarray(out / np.linalg.norm(out, axis=1, keepdims=True), dtype=np.float32)


@dataclass
class Representation:
    """Fitted parameters of the hybrid vector (see the module docstring). Arrays only, so that it saves as a
    plain .npz."""

    idf: np.ndarray             # float32 [n_tokens]
    components: np.ndarray      # float32 [n_tokens, factors]: TF-IDF row -> profile factors
    value_mean: np.ndarray      # float64 [n_value_features]
    value_scale: np.ndarray     # float64 [n_value_features]
    value_coef: np.ndarray      # float64 [n_value_features + 1]: ridge weights, intercept last
    value_top: np.ndarray       # float64 [1]: the 99.5th percentile of predicted value (the half circle's end)
    weights: np.ndarray         # float64 [3]: value, sequence embedding, profile factors
    horizon_days: np.ndarray    # float64 [1]
    # the inputs of a customer without attributes (the value model reads the store's, engine.data.attributes);
    # float32 [width], empty when the value model was fitted without them
    attribute_unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Bundles written before these have none: the ridge's value alone, on a linear scale.
    value_blend: np.ndarray = field(default_factory=lambda: np.zeros(1))   # float64 [1]: the forecast's share
    value_log: np.ndarray = field(default_factory=lambda: np.zeros(1))     # float64 [1]: the log part's share
    log_coef: np.ndarray = field(default_factory=lambda: np.zeros(0))      # float64 [n_value_features + 1]
    # float64 [2, 2]: the 0.5th and 99.5th percentiles over the base of the ridge's expected log spend (row 0)
    # and the forecast's (row 1), which scale the log part
    log_range: np.ndarray = field(default_factory=lambda: np.array([[0.0, 1.0], [0.0, 1.0]]))

    @classmethod
    def fit(cls, store: SequenceStore, as_of: int, horizon_days: float = 30.0, factors: int = 64,
            value_weight: float = 0.65, sequence_weight: float = 0.5, profile_weight: float = 0.5,
            ridge: float = 1.0, seed: int = 0, attribute_unknown: np.ndarray | None = None,
            value_scale: str = "linear+log", forecast: dict | None = None) -> Representation:
        """Profile factors from the store's purchases; the value model by replaying its last horizon (with the
        store's attributes as inputs, when it has them: ``attribute_unknown`` is the row of a customer without
        one, float32 [width]). ``forecast``: the forecasting head's answer for each customer over
        ``horizon_days`` from ``as_of`` ({"expected_spend", "p_buy"}: float [n], engine.forecast.process),
        blended into the value when given (see the module docstring); ``value_scale``: "linear", "log" or
        "linear+log"."""
        if value_scale not in SCALES:
            raise ValueError(f"represent.value_scale={value_scale!r}: expected one of {sorted(SCALES)}")
        from sklearn.utils.extmath import randomized_svd

        counts = token_counts(store)
        idf = idf_weights(counts)
        matrix = tfidf(counts, idf)
        rank = int(max(1, min(factors, min(matrix.shape) - 1)))
        _, _, vt = randomized_svd(matrix, rank, random_state=seed)
        components = np.ascontiguousarray(vt.T, dtype=np.float32)

        cut = as_of - int(horizon_days * DAY)
        width = 0 if store.attributes is None else store.attributes.shape[1]
        unknown = (np.zeros(0, np.float32) if not width else np.zeros(width, np.float32) if attribute_unknown is None
                   else np.asarray(attribute_unknown, np.float32))
        x = value_inputs(store, cut, unknown)
        nonempty = np.flatnonzero(store.lengths() > 0)
        rows = nonempty[np.asarray(store.columns["ts"])[store.offsets[:-1][nonempty]] < cut]
        if len(rows) < 50:
            raise ValueError(f"representation: only {len(rows)} customers have events before {cut} (as_of "
                             f"minus forecast.horizon_days={horizon_days:g}); the value model needs at least "
                             "50: use a longer log or a shorter forecast.horizon_days")
        later = future_truth(store.after(cut, as_of))["spend"][rows]
        y = np.sqrt(later)
        mean, scale = x[rows].mean(0), x[rows].std(0) + 1e-9
        z = (x[rows] - mean) / scale
        # ridge in closed form on a handful of features: (Z'Z + lambda I) w = Z'y, intercept unpenalised
        zc = z - z.mean(0)
        gram = zc.T @ zc + ridge * np.eye(z.shape[1])

        def solve(target: np.ndarray) -> np.ndarray:
            w = np.linalg.solve(gram, zc.T @ (target - target.mean()))
            return np.append(w, target.mean() - z.mean(0) @ w)

        coef, log_coef = solve(y), solve(np.log1p(np.maximum(later, 0.0)))
        rep = cls(idf, components, mean, scale, coef, np.ones(1), np.array([value_weight, sequence_weight,
                  profile_weight], np.float64), np.array([horizon_days], np.float64), unknown,
                  np.array([0.0 if forecast is None else 0.5]), np.array([SCALES[value_scale]]), log_coef)
        now = rep.inputs(store, as_of)
        predicted = rep.value(store, as_of, forecast, now)
        rep.value_top = np.array([max(float(np.quantile(predicted, 0.995)), 1e-9)])
        parts = rep.log_parts(store, as_of, forecast, now)
        rep.log_range = np.array([[float(np.quantile(v, 0.005)), float(np.quantile(v, 0.995))] for v in parts]
                                 + [[0.0, 1.0]] * (2 - len(parts)))
        r2 = 1.0 - ((z @ coef[:-1] + coef[-1] - y) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
        log.info("representation: %d profile factors over %d items and categories; value model R^2 %.3f on "
                 "the replayed last %g days (%d customers)", rank, counts.shape[1], r2, horizon_days, len(rows))
        return rep

    def inputs(self, store: SequenceStore, as_of: int) -> np.ndarray:
        """float64 [n, n_value_features]: the customers' standardised value inputs as of ``as_of``."""
        return (value_inputs(store, as_of, self.attribute_unknown) - self.value_mean) / self.value_scale

    def _forecast(self, forecast: dict | None) -> dict | None:
        """The forecast's answer when the value blends it in (then it is required), else None."""
        if float(self.value_blend[0]) == 0:
            return None
        if forecast is None:
            raise ValueError("representation: its value blends in the forecast's answer over "
                             f"{float(self.horizon_days[0]):g} days (expected spend, p_buy), and none was given")
        return forecast

    def value(self, store: SequenceStore, as_of: int, forecast: dict | None = None,
              z: np.ndarray | None = None) -> np.ndarray:
        """float64 [n]: predicted sqrt(spend over the horizon) as of ``as_of`` (0 at least): the ridge's,
        blended with the square root of ``forecast["expected_spend"]`` when the representation was fitted so
        (then ``forecast`` is required: the forecasting head's answer over horizon_days). ``z``: the
        customers' inputs(store, as_of), when the caller has them."""
        z = self.inputs(store, as_of) if z is None else z
        ridge = np.maximum(z @ self.value_coef[:-1] + self.value_coef[-1], 0.0)
        forecast, blend = self._forecast(forecast), float(self.value_blend[0])
        if forecast is None:
            return ridge
        head = np.sqrt(np.maximum(np.asarray(forecast["expected_spend"], dtype=np.float64), 0.0))
        return (1.0 - blend) * ridge + blend * head

    def expected_spend(self, store: SequenceStore, as_of: int, forecast: dict | None = None) -> np.ndarray:
        return self.value(store, as_of, forecast) ** 2

    def log_parts(self, store: SequenceStore, as_of: int, forecast: dict | None = None,
                  z: np.ndarray | None = None) -> list[np.ndarray]:
        """[float64 [n], ...]: the expected log1p(spend over the horizon) of the second ridge and, when the
        value blends in the forecast, the head's, p_buy x log1p(expected spend / p_buy) (its spend, if any,
        taken as certain: the expected log of a purchase that may not happen); ``z``: see value."""
        z = self.inputs(store, as_of) if z is None else z
        parts = [np.maximum(z @ self.log_coef[:-1] + self.log_coef[-1], 0.0)]
        forecast = self._forecast(forecast)
        if forecast is not None:
            p_buy = np.clip(np.asarray(forecast["p_buy"], dtype=np.float64), 1e-9, 1.0)
            spend = np.maximum(np.asarray(forecast["expected_spend"], dtype=np.float64), 0.0)
            parts.append(p_buy * np.log1p(spend / p_buy))
        return parts

    def position(self, store: SequenceStore, as_of: int, value: np.ndarray, forecast: dict | None = None,
                 z: np.ndarray | None = None) -> np.ndarray:
        """float64 [n] in [0, 1]: each customer's place on the half circle (see the module docstring), for
        ``value`` = self.value(store, as_of, forecast); ``z``: see value."""
        linear = np.clip(value / float(self.value_top[0]), 0.0, 1.0)
        share = float(self.value_log[0])
        if share == 0:
            return linear
        parts = self.log_parts(store, as_of, forecast, z)
        ranges = self.log_range[:len(parts)]  # the second row only when the forecast is blended in
        scaled = [np.clip((v - lo) / max(hi - lo, 1e-9), 0.0, 1.0) for v, (lo, hi) in zip(parts, ranges, strict=True)]
        return (1.0 - share) * linear + share * np.mean(scaled, axis=0)

    def profile(self, store: SequenceStore) -> np.ndarray:
        """float32 [n, factors], L2-normalised (zero rows for customers with no known purchase)."""
        if store.n_customers == 1:  # the service's one-customer path, without building sparse matrices
            return self._profile_one(store)
        counts = token_counts(store)
        if counts.shape[1] != len(self.idf):
            raise ValueError(f"representation: the store has {counts.shape[1]} items and categories, the fitted "
                             f"representation {len(self.idf)} (a store with other vocabularies)")
        f = np.asarray(tfidf(counts, self.idf) @ self.components, dtype=np.float32)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def _profile_one(self, store: SequenceStore) -> np.ndarray:
        """profile() of a one-customer store: the same TF-IDF row and projection, in plain numpy."""
        n_items = len(store.vocabs["item_id"])
        if n_items + len(store.vocabs["category"]) != len(self.idf):
            raise ValueError("representation: the store's vocabularies differ from the fitted representation's")
        purchase = store.is_purchase()
        tokens = np.concatenate([np.asarray(store.columns["item_id"])[purchase].astype(np.int64),
                                 np.asarray(store.columns["category"])[purchase].astype(np.int64) + n_items])
        tokens = tokens[(tokens > 0) & (tokens != n_items)]  # known items and known categories
        token, count = np.unique(tokens, return_counts=True)
        weight = np.log1p(count * self.idf[token]).astype(np.float32)
        weight /= max(float(np.linalg.norm(weight)), 1e-12)
        f = (weight @ self.components[token])[None, :] if len(token) else np.zeros((1, self.components.shape[1]),
                                                                                 np.float32)
        return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def transform(self, store: SequenceStore, as_of: int, sequence: np.ndarray, value: np.ndarray | None = None,
                  forecast: dict | None = None, z: np.ndarray | None = None) -> np.ndarray:
        """float32 [n, 2 + d + factors] unit vectors; ``sequence``: the encoder's embeddings [n, d]; ``value``:
        self.value(store, as_of, forecast) when the caller has it already; ``forecast``, ``z``: see value."""
        wv, ws, wp = (float(x) for x in self.weights)
        seq = np.asarray(sequence, dtype=np.float32)
        behaviour = np.hstack([np.sqrt(ws) * seq, np.sqrt(wp) * self.profile(store)])
        behaviour /= np.maximum(np.linalg.norm(behaviour, axis=1, keepdims=True), 1e-12)
        if z is None and (value is None or float(self.value_log[0]) > 0):  # once, for the value and its log part
            z = self.inputs(store, as_of)
        value = self.value(store, as_of, forecast, z) if value is None else value
        return place(self.position(store, as_of, value, forecast, z), behaviour, wv)

    def sequence_part(self, vectors: np.ndarray) -> np.ndarray:
        """[n, d], a view (no copy): the sequence encoder's part of ``transform``'s vectors, each row a positive
        multiple of the customer's encoder embedding (the layout is [2 value coordinates, d, factors])."""
        return vectors[:, 2:vectors.shape[1] - self.components.shape[1]]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(f, **{k.name: getattr(self, k.name) for k in fields(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Representation:
        with np.load(path, allow_pickle=False) as z:
            # bundles written before customer attributes, or before the value's blend and scale, have none
            optional = {"attribute_unknown", "value_blend", "value_log", "log_coef", "log_range"}
            missing = [k.name for k in fields(cls) if k.name not in z.files and k.name not in optional]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            rep = cls(**{k.name: z[k.name] for k in fields(cls) if k.name in z.files})
        if len(rep.log_coef) == 0:  # no log part to place the value by: linear
            rep.value_log = np.zeros(1)
        return rep
