"""The bundle's recommender: item statistics, the encoder's item vectors in a FAISS inner-product index, and two
rankers (every item; items the customer never bought, for discovery), fitted on the log itself.

    rec = Recommender.load(bundle / "items")
    items, scores = rec.recommend(Purchases.of(store), sequence_embeddings, as_of, n=20, filters=Filters())

Fitting (fit_recommender): the last ``horizon_days`` of the log are the answer the rankers learn, the
history before them the question (engine.recommend.ranker). The answers are then computed from the whole
history, so a recommendation is as of the bundle's as_of, or of a request's latest event in the service.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from engine.data.store import SequenceStore
from engine.model.datamodule import split_rows
from engine.model.features import gather, last_events
from engine.recommend import evaluation
from engine.recommend.candidates import FEATURES, Candidates, Filters, ModelScores, candidates, top_n
from engine.recommend.items import DAY, ItemStats, Purchases
from engine.recommend.ranker import Ranker, fit_ranker

log = logging.getLogger(__name__)

DIRECTORY = "items"
MIN_CUSTOMERS = 50  # buyers in the ranker's window below which nothing is learnt
FIT_CUSTOMERS = 20_000  # customers the rankers are fitted on, at most
CHUNK = 2048  # customers scored at a time in batch
WINDOWS = 3  # the rankers learn from the log's last WINDOWS windows of horizon_days, each its own question
_BOUGHT = FEATURES.index("bought")
MODEL_COLUMNS = [FEATURES.index("model_score"), FEATURES.index("in_model")]


def without_model(features: np.ndarray) -> np.ndarray:
    """The features with the model's columns zeroed: what the main ranker reads (see fit_recommender)."""
    out = features.copy()
    out[:, MODEL_COLUMNS] = 0.0
    return out


class NotLearnable(ValueError):
    """The log cannot teach recommendations (too short, too few buyers): said instead of an untrained answer."""


@torch.inference_mode()
def sequence_embeddings(model, store: SequenceStore, max_len: int, batch: int = 512) -> np.ndarray:
    """float32 [n, out_dim]: the encoder's own embedding of each customer's last ``max_len`` events (rows
    without events get zeros)."""
    device = next(model.parameters()).device
    out = np.zeros((store.n_customers, model.hparams.out_dim), np.float32)
    rows = np.flatnonzero(store.lengths() > 0)
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        starts, lengths = last_events(store, part, max_len)
        inputs = {k: v.to(device) for k, v in gather(store, starts, lengths).items()}
        out[part] = model.embedding(model.state(inputs)).float().cpu().numpy()
    return out


def item_index(model) -> tuple[faiss.Index, float] | None:
    """The encoder's item vectors (L2-normalised) in a FAISS inner-product index, id = item id, and the
    temperature of its logits; None for a model without the item head."""
    if not hasattr(model, "item_vectors"):
        return None
    vectors = F.normalize(model.item_vectors.detach().float().cpu(), dim=-1).numpy()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors))
    return index, float(model.temperature)


@dataclass
class Recommender:
    stats: ItemStats
    ranker: Ranker
    discovery: Ranker
    index: faiss.Index | None
    temperature: float
    horizon_days: float
    summary: dict

    def __post_init__(self):
        self.vectors = self.index.reconstruct_n(0, self.index.ntotal) if self.index is not None else None

    def model_scores(self, sequence: np.ndarray | None) -> ModelScores | None:
        if self.vectors is None or sequence is None:
            return None
        return ModelScores(np.ascontiguousarray(sequence, np.float32), self.vectors, self.temperature, self.index)

    def main_scores(self, features: np.ndarray) -> np.ndarray:
        """The main ranker's score of each candidate (it does not read the model's columns)."""
        return self.ranker.score(without_model(features))

    def discovery_scores(self, features: np.ndarray) -> np.ndarray:
        """The discovery ranker's score of each candidate (for items new to the customer)."""
        return self.discovery.score(features)

    def score(self, c: Candidates, filters: Filters) -> np.ndarray:
        """Each candidate's score: the discovery ranker's for new_only lists, else the main ranker's."""
        return self.discovery_scores(c.features) if filters.new_only else self.main_scores(c.features)

    def recommend(self, p: Purchases, sequence: np.ndarray | None, as_of: int, n: int,
                  filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(items int64 [p.n, n], scores float32 [p.n, n]) best first; item 0 / NaN pad a short list."""
        filters = filters or Filters()
        # the main lists come from the history alone, the new-item lists also from the model (fit_recommender)
        scores = self.model_scores(sequence) if filters.new_only else None
        c = candidates(p, self.stats, as_of, scores, filters)
        keep = c.allowed
        return top_n(c.row[keep], c.item[keep], self.score(c, filters)[keep], p.n, n)

    def save(self, directory: str | Path) -> None:
        out = Path(directory)
        self.stats.save(out)
        self.ranker.save(out / "ranker.pt")
        self.discovery.save(out / "discovery.pt")
        if self.index is not None:
            faiss.write_index(self.index, str(out / "items.faiss"))
        (out / "recommender.json").write_text(json.dumps(
            {"temperature": self.temperature, "horizon_days": self.horizon_days, "summary": self.summary}))

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        path = Path(directory)
        meta = json.loads((path / "recommender.json").read_text())
        index = faiss.read_index(str(path / "items.faiss")) if (path / "items.faiss").exists() else None
        return cls(ItemStats.load(path), Ranker.load(path / "ranker.pt"), Ranker.load(path / "discovery.pt"),
                   index, float(meta["temperature"]), float(meta["horizon_days"]), meta.get("summary", {}))


def training_candidates(store: SequenceStore, purchases: Purchases, model, cutoff: int, horizon_days: float,
                        max_len: int, seed: int, max_customers: int = FIT_CUSTOMERS,
                        unseen: np.ndarray | None = None):
    """(candidates, bought, validation mask, coverage, with_model) of the ranker's question: the history
    before ``cutoff`` of up to ``max_customers`` customers who bought in [cutoff, cutoff + horizon);
    ``with_model``: (candidates, bought, validation mask) of the same customers with the model's candidates
    and scores where they are known (None without them).

    The model's scores (a candidate source and two features) are given for the customers the encoder did not
    train on (``unseen``, bool per store row) only: it was trained on every other customer's whole history,
    window included, so their scores would know the answer and the ranker would learn to trust them too
    much (Complete Journey, 3 seeds: Recall@20 0.1565 with every customer's scores, 0.1591 without any)."""
    before = purchases.before(cutoff)
    stats = ItemStats.build(store, cutoff, before, seed)
    window = (purchases.ts >= cutoff) & (purchases.ts < cutoff + horizon_days * DAY)
    active = np.intersect1d(np.unique(purchases.row[window]), np.unique(before.row))
    if len(active) < MIN_CUSTOMERS:
        raise NotLearnable(f"recommendations: {len(active)} customers bought both before and within the last "
                           f"{horizon_days:g} days of the log (at least {MIN_CUSTOMERS} needed to learn what they "
                           "buy next; set recommend.horizon_days or bring a longer log)")
    if len(active) > max_customers:
        active = np.sort(np.random.default_rng(seed).choice(active, max_customers, replace=False))
    index = item_index(model) if unseen is not None else None
    order = np.concatenate([active[unseen[active]], active[~unseen[active]]]) if index else active
    sub = purchases.take(order)
    history = sub.before(cutoff)
    truth = evaluation.truth(sub, cutoff, horizon_days, stats.n_items)
    # the ranker's own early stopping: a tenth of the lists, by a hash of the id
    _, val_rows = split_rows(store.customer_ids.take(pa.array(order)), 0.1, seed + 7919)

    def labelled(c: Candidates) -> tuple[Candidates, np.ndarray, np.ndarray]:
        return c, np.asarray(truth[c.row, c.item]).ravel().astype(bool), np.isin(c.row, val_rows)

    everything = Filters(exclude_returned=False)
    c, bought, val = labelled(candidates(history, stats, cutoff, None, everything))
    coverage = float(bought.sum()) / max(truth.nnz, 1)  # share of the bought items among the candidates
    with_model = None
    if index is not None:
        k = int(unseen[active].sum())  # rows 0..k-1: the customers whose model scores are known
        sequence = sequence_embeddings(model, store.take(order[:k]).before(cutoff), max_len)
        scores = ModelScores(sequence, index[0].reconstruct_n(0, index[0].ntotal), index[1], index[0])
        known = candidates(history.slice(0, k), stats, cutoff, scores, everything)
        rest = c.row >= k
        with_model = labelled(Candidates(*(np.concatenate([getattr(known, f), getattr(c, f)[rest]])
                                           for f in ("row", "item", "features", "allowed"))))
    return c, bought, val, coverage, with_model


def fit_recommender(store: SequenceStore, as_of: int, model, horizon_days: float, trainer_kwargs: dict,
                    max_len: int = 256, seed: int = 0, windows: int = WINDOWS,
                    unseen: np.ndarray | None = None) -> Recommender:
    """Fit both rankers on the log's last ``windows`` windows of ``horizon_days`` (each one's history before
    it the question; NotLearnable when the log cannot teach them), then the item statistics as of ``as_of``
    that answers are computed from. ``unseen`` (bool per store row): the customers the encoder was not
    trained on, whose model scores the rankers learn from (see training_candidates); with fewer than
    MIN_CUSTOMERS of them the rankers do without the model's scores."""
    if unseen is not None and int(unseen.sum()) < MIN_CUSTOMERS:
        log.info("recommendations: %d customers held out of the encoder's training (at least %d needed to "
                 "learn how far to trust its item scores): the rankers do without them", int(unseen.sum()),
                 MIN_CUSTOMERS)
        unseen = None
    first, _ = store.time_range()
    cutoffs = [int(as_of - (w + 1) * horizon_days * DAY) for w in range(windows)]
    cutoffs = [t for t in cutoffs if t - first >= horizon_days * DAY]  # each question has a history as long
    if not cutoffs:
        raise NotLearnable(f"recommendations: the log spans {(as_of - first) / DAY:.0f} days; learning what "
                           f"customers buy in the next {horizon_days:g} days needs at least twice that")
    purchases = Purchases.of(store, as_of)
    plain, modelled, offset, covered = [], [], 0, []
    for w, cutoff in enumerate(cutoffs):
        try:
            c, bought, val, coverage, with_model = training_candidates(
                store, purchases, model, cutoff, horizon_days, max_len, seed + w, FIT_CUSTOMERS // len(cutoffs),
                unseen)
        except NotLearnable:
            if w == 0:
                raise
            continue  # an earlier window with too few buyers: the later ones teach alone
        plain.append((Candidates(c.row + offset, c.item, c.features, c.allowed), bought, val))
        if with_model is not None:
            m = with_model[0]
            modelled.append((Candidates(m.row + offset, m.item, m.features, m.allowed), *with_model[1:]))
        offset += int(c.row.max()) + 1 if len(c.row) else 0
        covered.append(coverage)

    def joined(parts) -> tuple[Candidates, np.ndarray, np.ndarray]:
        return (Candidates(*(np.concatenate([getattr(p[0], f) for p in parts]) for f in ("row", "item", "features",
                                                                                          "allowed"))),
                np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))

    # The main ranker reads the history alone: learnt from the held-out customers only (a tenth), the
    # model's scores moved with the seed more than they added (Complete Journey, 3 seeds: Recall@20 0.1570 ±
    # 0.0019 with them, 0.1591 ± 0.0005 without). For items new to the customer (the discovery ranker)
    # they add: new-item Recall@20 0.0335 ± 0.0006 with them, 0.0319 ± 0.0004 without.
    c, bought, val = joined(plain)
    ranker, summary = fit_ranker(c, bought, val, trainer_kwargs, seed=seed)
    c, bought, val = joined(modelled) if modelled else (c, bought, val)
    new = c.features[:, _BOUGHT] == 0
    part = Candidates(c.row[new], c.item[new], c.features[new], c.allowed[new])
    discovery, new_summary = fit_ranker(part, bought[new], val[new], trainer_kwargs, seed=seed + 1)
    summary = {"ranker": summary, "discovery": new_summary, "windows": len(plain), "horizon_days": horizon_days,
               "candidates_per_customer": round(len(plain[0][0].row) / max(len(np.unique(plain[0][0].row)), 1), 1),
               "candidate_coverage": round(float(np.mean(covered)), 4)}
    log.info("recommendations: %.0f candidates per customer hold %.1f%% of the items bought in the window",
             summary["candidates_per_customer"], 100 * summary["candidate_coverage"])
    index = item_index(model) if unseen is not None else None  # scores the rankers never learnt: not read
    summary["model_scores"] = index is not None
    stats = ItemStats.build(store, as_of, purchases, seed)
    return Recommender(stats, ranker, discovery, index[0] if index else None, index[1] if index else 1.0,
                       float(horizon_days), summary)


def recommend_base(rec: Recommender, store: SequenceStore, sequence: np.ndarray | None, as_of: int, n: int,
                   filters: Filters) -> pa.Table:
    """recommendations.parquet's table for every customer of ``store``: customer_id, item_id, rank (1 = best),
    score; CHUNK customers at a time, progress logged every tenth of the base."""
    purchases = Purchases.of(store, as_of)
    vocab = np.asarray(store.vocabs["item_id"], dtype=object)
    parts = []
    for start in range(0, store.n_customers, CHUNK):
        rows = np.arange(start, min(start + CHUNK, store.n_customers))
        items, scores = rec.recommend(purchases.slice(int(rows[0]), int(rows[-1]) + 1), None if sequence is None else sequence[rows], as_of,
                                      n, filters)
        valid = items > 0
        r, k = np.nonzero(valid)
        parts.append(pa.table({"customer_id": store.customer_ids.take(pa.array(rows[r])),
                               "item_id": pa.array(vocab[items[valid]].tolist(), pa.string()),
                               "rank": pa.array(k + 1, pa.int32()), "score": pa.array(scores[valid], pa.float32())}))
        done = int(rows[-1]) + 1
        if store.n_customers > 10 * CHUNK and done * 10 // store.n_customers > start * 10 // store.n_customers:
            log.info("recommendations: %d of %d customers", done, store.n_customers)
    if not parts:
        return pa.table({"customer_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()),
                         "rank": pa.array([], pa.int32()), "score": pa.array([], pa.float32())})
    return pa.concat_tables(parts)
