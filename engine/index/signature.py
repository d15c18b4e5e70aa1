"""Lookalike by signature: learn from the seeds what sets them apart from the base, then rank everyone by it.

A seed list is usually "the customers who did X" (bought a product, joined a programme). What they share is a
few items or categories they buy far more than the base does, plus a level of activity. Nearest-neighbour
search over a general-purpose embedding dilutes that signal across every dimension; this scorer finds it:

1. features: per customer, log1p purchase counts of every item and category with at least ``min_buyers``
   buyers, the same counts decayed with a 30-day half-life (recent taste), and value facts (sparse CSR);
2. the signature: among the features held by at least ``support`` of the seeds (a fifth; two at least, the
   one seed of a single-seed list), the ``top`` whose seed mean lies the most standard errors above the base
   mean (a z-score); a candidate's signature score is its standardised values there, weighted by the
   z-scores. Without the support floor a rare item that three seeds happen to share out-scores the product
   they all buy, and its few holders jump the queue;
3. the rest of the ranking: an L2 logistic regression of seeds against non-seeds over which items and
   categories each customer ever bought (0/1) beside the value facts standardised and scaled by
   ``VALUE_WEIGHT`` (at most ``max_negatives`` non-seeds sampled), which orders the many customers with none
   of the signature features. Presence, not log counts: a heavy shopper's counts otherwise outvote what
   the seeds buy;
4. two more views of "customers like these", each as the rank of its score: the cosine to the seeds'
   centroid over a 64-dimensional truncated SVD of the TF-IDF item histories (the analyst's baseline), and
   the signature carried through a rank-32 SVD of the features (to features that go with it);
5. score = signature score / its maximum + ``Weights.regression`` x the regression's rank
   + ``Weights.profile`` x the profile's + ``Weights.lowrank`` x the low-rank signature's + ``VECTOR_WEIGHT``
   x the rank of the cosine to the seeds' centroid in the sequence encoder's own space, when the caller has
   it (a trained bundle does; ``Representation.sequence_part``). The encoder reads the order and timing of the
   events, which the bags above do not (0.1 tried beside 0.05 and 0.2 on both logs, before the tuning).

Which views help depends on the log, so engine.index.tuning weighs them on each user's own history at
training time: it holds back the history's last quarter, poses the evaluation's tasks there (half the buyers
of a category or a product bought in that window as the seeds, the rest to find) and keeps the best of 36
weightings (``TUNE_GRID``) if it beats ``Weights()``, the weighting used before, by two standard errors. The
bundle's manifest keeps them ("lookalike") and the service reads them. On the real grocery log it picks a
three-feature signature with the low-rank view and a little of the profile, on the generated log a
ten-feature signature with more of the profile; fixed, the low-rank view loses on the generated log and the
ten features on the real one.

``SignatureFeatures.from_store`` builds the matrices (and the factorisations the weights read) once per
bundle version (erasure makes a new one); ``scores`` answers one seed list in milliseconds to a second,
depending on the base.

bench/lookalike_scorers.py (no training, so without the vector term) scores the default beside the variants
on the real log and on the generated one (bench/results/lookalike_scorers*.md). On the real log the support
floor and the presence regression lifted product ROC-AUC from 0.789 to 0.802, the tuning to 0.806; on the
generated log the tuning lifts it from 0.865 to 0.882. Blending in the customers' true later purchase
count (told the answer) would add 0.004-0.012, but a forecast of it (BG/NBD's expected transactions) loses
0.006 on the real log's products; a weaker or cross-fitted regression, tiers by signature, a co-purchase
expansion and gradient boosting lose on both logs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from engine.data.store import SequenceStore
from engine.represent import tfidf_histories, token_counts, value_features

log = logging.getLogger(__name__)

HALF_LIFE_DAYS = 30.0
SUPPORT = 0.2  # a signature feature is held by at least this share of the seeds
VALUE_WEIGHT = 0.3  # standard deviations of each value fact in the regression's inputs, beside 0/1 presence
VECTOR_WEIGHT = 0.1  # the weight of the rank of the cosine to the seeds' centroid in the encoder's space
PROFILE_RANK = 64  # the TF-IDF item profile's truncated SVD (the analyst's baseline, as one part of the score)
LOWRANK_RANK = 32  # the truncated SVD of the signature features that carries a signature to similar features
DAY = 86400


@dataclass(frozen=True)
class Weights:
    """The parts of a signature lookalike score: the signature of the ``top`` features (weight 1), then the
    ranks (in [0, 1]) of the regression, of the cosine to the seeds' centroid over the TF-IDF item profile's
    SVD, and of the signature carried through a low-rank SVD of the features, each times its weight.
    engine.index.tuning chooses them per log on the history alone; ``Weights()`` (UNTUNED) is the weighting
    used before it, and its fallback."""

    top: int = 3
    regression: float = 0.2
    profile: float = 0.0
    lowrank: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Weights:
        """ValueError naming the part unless ``d`` is a to_dict of this engine's parts (top an integer >= 1,
        the weights numbers >= 0)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(d, dict) or set(d) - set(names):
            raise ValueError(f"lookalike weights {d!r}: expected the parts {names}")
        top = d.get("top", cls.top)
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"lookalike weights: top={top!r}, expected an integer >= 1")
        for name in names[1:]:
            value = d.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"lookalike weights: {name}={value!r}, expected a number >= 0")
        return cls(**d)

    def __str__(self) -> str:
        return (f"signature of {self.top} + {self.regression:g} x regression + {self.profile:g} x item profile + "
                f"{self.lowrank:g} x low-rank signature")


UNTUNED = Weights()  # the weighting before the tuning, and its fallback


@dataclass
class SignatureFeatures:
    """matrix: float32 CSR [n_customers, n_features]; names: one per column ("item:ID", "category:NAME",
    "recent item:ID", ..., "value:NAME"); mean / var: float64 [n_features], over all customers; inputs:
    float32 CSR [n_customers, n_tokens + n_value], the regression's: 1 where the customer ever bought the
    item or category (those kept, with at least ``min_buyers`` buyers), then the value facts standardised and
    scaled by VALUE_WEIGHT."""

    matrix: sp.csr_matrix
    names: list[str]
    mean: np.ndarray
    var: np.ndarray
    inputs: sp.csr_matrix
    profile: np.ndarray | None = None  # float32 [n, PROFILE_RANK], L2-normalised rows: weights.profile's
    lowrank: tuple[np.ndarray, np.ndarray] | None = None  # (u s [n, r], vt [r, n_features]): weights.lowrank's

    @classmethod
    def from_store(cls, store: SequenceStore, as_of: int, min_buyers: int = 5, weights: Weights | None = UNTUNED
                   ) -> SignatureFeatures:
        """The features of every customer of ``store`` as of ``as_of``, with the factorisations ``weights``
        reads (None: both, as engine.index.tuning needs)."""
        ts = np.asarray(store.columns["ts"], dtype=np.int64)
        decay = np.exp(-np.log(2.0) * np.maximum(as_of - ts, 0) / (HALF_LIFE_DAYS * DAY))
        vocab = [f"item:{t}" for t in store.vocabs["item_id"]] + [f"category:{t}" for t in store.vocabs["category"]]
        blocks, names = [], []
        counts = token_counts(store)
        buyers = np.diff(counts.tocsc().indptr)
        keep = np.flatnonzero(buyers >= min_buyers)
        for prefix, m in (("", counts), ("recent ", token_counts(store, decay))):
            m = m[:, keep].tocsr().astype(np.float32)
            m.data = np.log1p(m.data)
            blocks.append(m)
            names += [prefix + vocab[j] for j in keep]
        value = value_features(store, as_of).astype(np.float32)
        blocks.append(sp.csr_matrix(value))
        names += [f"value:{i}" for i in range(value.shape[1])]
        matrix = sp.hstack(blocks, format="csr")
        mean = np.asarray(matrix.mean(axis=0), dtype=np.float64).ravel()
        var = np.asarray(matrix.multiply(matrix).mean(axis=0), dtype=np.float64).ravel() - mean**2
        presence = blocks[0].copy()
        presence.data[:] = 1.0
        standard = (value - value.mean(axis=0)) / np.maximum(value.std(axis=0), 1e-6)
        inputs = sp.hstack([presence, sp.csr_matrix(VALUE_WEIGHT * standard)], format="csr", dtype=np.float32)
        log.info("signature features: %d customers x %d features", matrix.shape[0], matrix.shape[1])
        profile = lowrank = None
        if weights is None or weights.profile:
            u, s = truncated_svd(tfidf_histories(store), PROFILE_RANK)[:2]
            profile = u * s
            profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        if weights is None or weights.lowrank:
            u, s, vt = truncated_svd(matrix, LOWRANK_RANK)
            lowrank = (u * s, vt)
        return cls(matrix, names, mean, np.maximum(var, 0.0), inputs, profile, lowrank)

    @property
    def n(self) -> int:
        return self.matrix.shape[0]


def truncated_svd(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (u, s, vt) of scikit-learn's randomized SVD at rank ``k`` (at most the matrix's smaller side - 1),
    with a fixed random state: one bundle's features are the same at every load."""
    from sklearn.utils.extmath import randomized_svd

    u, s, vt = randomized_svd(matrix, max(min(k, min(matrix.shape) - 1), 1), random_state=0)
    return u.astype(np.float32), s.astype(np.float32), vt.astype(np.float32)


def signature(features: SignatureFeatures, seeds: np.ndarray, top: int = 3, support: float = SUPPORT
              ) -> tuple[np.ndarray, np.ndarray]:
    """(feature columns, z-scores) of the ``top`` features most over-represented among the seeds, among those
    held (non-zero) by at least ``support`` of them (two at least, or the one seed; ``support=0``: no floor)."""
    seeds = np.unique(np.asarray(seeds, dtype=np.int64))
    held = features.matrix[seeds]
    seed_mean = np.asarray(held.mean(axis=0), dtype=np.float64).ravel()
    z = (seed_mean - features.mean) / (np.sqrt(features.var / max(len(seeds), 1)) + 1e-9)
    if support > 0:  # 0: no floor (the study's comparison)
        holders = np.bincount(held.indices[held.data != 0], minlength=held.shape[1])
        z[holders < max(min(len(seeds), 2), support * len(seeds))] = -np.inf
    cols = np.argsort(-z, kind="stable")[:top]
    cols = cols[z[cols] > 0]
    return cols, z[cols]


def signature_score(features: SignatureFeatures, seeds: np.ndarray, top: int = 3, support: float = SUPPORT
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 [n] signature scores in [-1, 1], the signature's feature columns, their weights): each customer's
    standardised values on the ``top`` most over-represented features, weighted by their z-scores."""
    cols, z = signature(features, seeds, top, support)
    weights = z / np.sqrt(features.var[cols] + 1e-3)
    sig = np.asarray(features.matrix[:, cols] @ weights, dtype=np.float64).ravel() if len(cols) else np.zeros(features.n)
    return sig / max(float(np.abs(sig).max()), 1e-12), cols, weights


def regression(x: sp.csr_matrix, seeds: np.ndarray, negatives: np.ndarray, c: float) -> np.ndarray:
    """float64 [n]: every row's decision value under an L2 logistic regression (``C=c``) of the ``seeds`` rows
    against the ``negatives`` rows of ``x``."""
    from sklearn.linear_model import LogisticRegression

    rows = np.concatenate([seeds, negatives])
    y = np.r_[np.ones(len(seeds)), np.zeros(len(negatives))]
    model = LogisticRegression(C=c, max_iter=300).fit(x[rows], y)
    return np.asarray(x @ model.coef_[0], dtype=np.float64).ravel()


def rank(x: np.ndarray) -> np.ndarray:
    """float64 [n] ranks in (0, 1] (ties share their mean rank)."""
    return rankdata(x) / len(x)


def score_parts(features: SignatureFeatures, seeds: np.ndarray, tops=(3,), c: float = 0.006,
                max_negatives: int = 20000, seed: int = 0, support: float = SUPPORT) -> dict:
    """The parts ``combine`` weighs, for one seed list (unique rows): "signature" and "lowrank" per value of
    ``tops``, "regression", "profile" (the last three as ranks; profile and lowrank where the features carry
    their factorisations, as they do the weights they were built for)."""
    n = features.n
    rest = np.setdiff1d(np.arange(n), seeds)
    rng = np.random.default_rng(seed)
    negatives = rest if len(rest) <= max_negatives else np.sort(rng.choice(rest, max_negatives, replace=False))
    parts = {"signature": {}, "lowrank": {}, "regression": rank(regression(features.inputs, seeds, negatives, c))}
    for top in tops:
        sig, cols, weights = signature_score(features, seeds, top, support)
        parts["signature"][top] = sig
        if features.lowrank is not None:
            u, vt = features.lowrank
            parts["lowrank"][top] = rank(u @ (vt[:, cols] @ weights)) if len(cols) else np.zeros(n)
    if features.profile is not None:
        centroid = features.profile[seeds].mean(axis=0)  # its scale leaves the ranks alone
        parts["profile"] = rank(features.profile @ centroid)
    return parts


def combine(parts: dict, weights: Weights) -> np.ndarray:
    """float64 [n]: the signature of ``weights.top`` plus each ranked part times its weight."""
    score = parts["signature"][weights.top] + weights.regression * parts["regression"]
    for name, weight, part in (("profile", weights.profile, parts.get("profile")),
                               ("lowrank", weights.lowrank, parts["lowrank"].get(weights.top))):
        if weight and part is None:
            raise ValueError(f"signature lookalike: the weights give the {name} part {weight:g} but the "
                             "features were built without it (SignatureFeatures.from_store(weights=...))")
        if weight:
            score = score + weight * part
    return score


def scores(features: SignatureFeatures, seeds: np.ndarray, weights: Weights = UNTUNED, c: float = 0.006,
           max_negatives: int = 20000, seed: int = 0, support: float = SUPPORT, vectors: np.ndarray | None = None,
           vector_weight: float = VECTOR_WEIGHT, norms: np.ndarray | None = None) -> np.ndarray:
    """float64 [n] lookalike scores of every customer (higher = more like the seeds; seeds included), the
    parts weighed by ``weights`` (a bundle's tuned ones: engine.index.tuning).
    ``vectors``: [n, d] rows of the sequence encoder's space, any positive scale
    (``Representation.sequence_part``), or None; ``norms``: their row norms when the caller keeps them (the
    service does, per bundle version), else computed here. The hybrid customer vector in their place does
    worse on the real log (bench/quality.py, weight 0.1): its centroid loses 0.008 product ROC-AUC against no
    vector term, its nearest seeds 0.002; its profile factors repeat what the bags say."""
    seeds = np.unique(np.asarray(seeds, dtype=np.int64))
    if len(seeds) == 0:
        raise ValueError("signature lookalike: at least one seed is needed")
    n = features.n
    if len(seeds) >= n:
        raise ValueError("signature lookalike: every customer is a seed; nothing is left to rank")
    parts = score_parts(features, seeds, (weights.top,), c, max_negatives, seed, support)
    score = combine(parts, weights)
    if vectors is not None and vector_weight:
        if norms is None:
            norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        centroid = (vectors[seeds] / norms[seeds, None]).mean(axis=0)  # its scale leaves the ranks alone
        score += vector_weight * rankdata((vectors @ centroid) / norms) / n
    return score


def explain(features: SignatureFeatures, seeds: np.ndarray, top: int = 10) -> list[dict]:
    """What sets the seeds apart: the ``top`` features by z-score among those held by a fifth of the seeds (see
    signature), with the seeds' and the base's means."""
    seeds = np.unique(np.asarray(seeds, dtype=np.int64))
    cols, z = signature(features, seeds, top)
    seed_mean = np.asarray(features.matrix[seeds][:, cols].mean(axis=0)).ravel()
    return [{"feature": features.names[c], "z": float(s), "seed_mean": float(m), "base_mean": float(features.mean[c])}
            for c, s, m in zip(cols, z, seed_mean, strict=True)]
