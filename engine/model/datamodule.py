"""Lightning data over a sequence store: CoLES views (and forecast pairs) for training, whole histories for
prediction. Workers read the memory-mapped store; every batch is gathered vectorized in the collate."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from engine.data.store import SequenceStore
from engine.forecast.transactions import transaction_unit
from engine.model.features import DAY, StoreIndex, gather, last_events, random_slices


class CustomerRows(Dataset):
    """Map-style dataset of customer rows; the collate turns a list of rows into a batch."""

    def __init__(self, rows: np.ndarray):
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return int(self.rows[i])


def hash_ids(customer_ids, seed: int = 0) -> np.ndarray:
    """uint64 [n]: seeded FNV-1a hash of each id's UTF-8 bytes, vectorized over customers (loops over bytes)."""
    raw = np.char.encode(np.asarray(customer_ids.to_numpy(zero_copy_only=False)).astype(str), "utf-8")
    width = raw.dtype.itemsize
    codes = raw.view(np.uint8).reshape(len(raw), width) if len(raw) else np.zeros((0, width), np.uint8)
    h = np.full(len(raw), (0xCBF29CE484222325 ^ seed) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            byte = codes[:, j].astype(np.uint64)
            h = np.where(byte > 0, (h ^ byte) * np.uint64(0x100000001B3), h)
    return h


def split_rows(customer_ids, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation rows by a seeded hash of the customer id: stable across runs and data refreshes."""
    val = (hash_ids(customer_ids, seed) % 10_000) < int(val_fraction * 10_000)
    return np.flatnonzero(~val), np.flatnonzero(val)


def forecast_context(index: StoreIndex | None, store: SequenceStore, rows: np.ndarray, hist_end: np.ndarray,
                     as_of: np.ndarray, unit: str = "basket") -> torch.Tensor:
    """float32 [B, CONTEXT_FEATURES], as of ``as_of`` over the events before ``hist_end`` (global index), in
    transactions of ``unit`` (the index's, when one is given): log days since the last event, log events,
    log days since the first event (tenure), log transactions so far and in the last 7, 28 and 91 days,
    transactions per day over the last 28 and 91 days (over the tenure when shorter) and over the tenure,
    log spend so far and in the last 28 and 91 days, log spend per transaction, log days since the last
    purchase (since the first event when none), whether there was one, log mean days between transactions
    (the tenure + 1 with fewer than two) and log days since the last purchase per mean gap; then the store's
    customer attributes (engine.data.attributes), when it has them: float32 [B, CONTEXT_FEATURES + width]."""
    index = index if index is not None else StoreIndex.build(store, unit)
    ts = np.asarray(store.columns["ts"])
    begin = store.offsets[rows]
    last = ts[np.maximum(hist_end - 1, 0)]
    first = ts[np.minimum(begin, max(len(ts) - 1, 0))]
    tenure = np.maximum(as_of - first, 0) / DAY

    def since(days: float) -> np.ndarray:
        return np.clip(index.first_at_or_after(rows, as_of - int(days * DAY)), begin, hist_end)

    purchases, spend = index.cum_purchases, index.cum_spend
    latest = index.last_purchase[hist_end]  # the latest purchase before hist_end, if it is this customer's
    bought = latest >= begin
    count = purchases[hist_end] - purchases[begin]
    recent = {w: purchases[hist_end] - purchases[since(w)] for w in (7, 28, 91)}
    total = np.maximum(spend[hist_end] - spend[begin], 0)
    first_purchase = np.where(bought, ts[np.clip(index.next_purchase[begin], 0, max(len(ts) - 1, 0))], first)
    last_purchase = np.where(bought, ts[np.maximum(latest, 0)], first)
    gap = np.where(count > 1, (last_purchase - first_purchase) / DAY / np.maximum(count - 1, 1), tenure + 1)
    recency = np.maximum(as_of - last_purchase, 0) / DAY
    context = np.stack([
        np.log1p(np.maximum(as_of - last, 0) / DAY),
        np.log1p(hist_end - begin),
        np.log1p(tenure),
        np.log1p(count),
        *(np.log1p(recent[w]) for w in (7, 28, 91)),
        *(recent[w] / np.clip(tenure, 1, w) for w in (28, 91)),
        count / np.maximum(tenure, 1),
        np.log1p(total),
        *(np.log1p(np.maximum(spend[hist_end] - spend[since(w)], 0)) for w in (28, 91)),
        np.log1p(total / np.maximum(count, 1)),
        np.log1p(recency),
        bought,
        np.log1p(np.maximum(gap, 0)),
        np.log1p(recency / np.maximum(gap, 0.5)),
    ], axis=1).astype(np.float32)
    if store.attributes is not None:
        context = np.hstack([context, np.asarray(store.attributes[rows], dtype=np.float32)])
    return torch.from_numpy(context)


class TrainCollate:
    """Rows -> CoLES views of each customer; and, for fitting the forecasting head (engine.model.head),
    (history before T, transactions and spend in [T, T+h)) pairs. T is drawn per customer between their
    history's first event and the data's end minus MIN_WINDOW, and the window h between MIN_WINDOW and the
    rest of the data: the head learns the purchase process at every horizon the log can show (see
    engine.forecast.process)."""

    MIN_WINDOW = 7 * DAY

    def __init__(self, store: SequenceStore, n_slices: int, min_len: int, max_len: int,
                 horizon_days: float | None, forecast_max_len: int, spend_scale: float,
                 forecast_samples: int = 1, unit: str = "basket"):
        self.store = store
        self.n_slices, self.min_len, self.max_len = n_slices, min_len, max_len
        self.horizon = None if not horizon_days else int(horizon_days * DAY)
        self.forecast_max_len = forecast_max_len
        self.forecast_samples = forecast_samples  # forecast pairs drawn per customer (engine.model.head)
        self.spend_scale = spend_scale
        self.unit = unit
        start, last = store.time_range()
        self.end = last + 1
        # a log shorter than 4 weeks gets windows of a quarter of its span
        self.min_window = int(min(self.MIN_WINDOW, max((self.end - start) / 4, DAY)))

    def __call__(self, rows: list[int]) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        local = self.store.take(rows)  # this batch's customers: every lookup below stays within them
        starts, lengths, labels = random_slices(local, np.arange(len(rows)), self.n_slices, self.min_len,
                                                self.max_len, rng)
        return {"views": gather(local, starts, lengths), "labels": torch.from_numpy(labels),
                "rows": torch.from_numpy(rows)}

    def forecast_pairs(self, store: SequenceStore, rng: np.random.Generator) -> dict:
        """``forecast_samples`` cutoffs T per customer, each drawn from the history's first event to the
        data's end minus the shortest window, with a window h drawn log-uniformly from the shortest window to
        the data's end. Pair j is the last ``forecast_max_len`` events before its T (a row of its own: a
        window shared by several cutoffs would let the events after an early cutoff decide where its input
        starts, and bias the fit), with its transactions and spend in [T, T + h) and h in days."""
        ts, index = np.asarray(store.columns["ts"]), StoreIndex.build(store, self.unit)
        k = self.forecast_samples
        rows_k = np.repeat(np.arange(store.n_customers), k)
        begin, total = store.offsets[rows_k], store.lengths()[rows_k]
        latest = self.end - self.min_window
        low = ts[np.minimum(begin, len(ts) - 1)] + 1  # after the customer's first event
        high = np.full(len(rows_k), latest)
        # Half the cutoffs anywhere in the history, half in the last few horizons: the forecast is asked for
        # at the data's end, so recent behaviour (trends, churn) weighs more.
        recent = rng.random(len(rows_k)) < 0.5
        low_k = np.where(recent, np.maximum(low, high - 3 * self.horizon), low)
        cutoff = low_k + np.floor(rng.random(len(rows_k)) * np.maximum(high - low_k, 1)).astype(np.int64)
        longest = np.maximum(self.end - cutoff, self.min_window).astype(np.float64)
        window = np.exp(np.log(self.min_window) + rng.random(len(rows_k)) * np.log(longest / self.min_window))
        window = np.minimum(window, longest).astype(np.int64)
        before = index.first_at_or_after(rows_k, cutoff)
        weight = ((high > low) & (before > begin) & (total > 0)).astype(np.float32)
        before = np.maximum(before, begin + np.minimum(total, 1))  # a pair without history: weight 0
        starts, lengths = last_events(store, rows_k, self.forecast_max_len, ends=before)
        inputs = gather(store, starts, np.maximum(lengths, 1))
        future_end = index.first_at_or_after(rows_k, cutoff + window)
        count = index.cum_purchases[future_end] - index.cum_purchases[before]
        spend = index.cum_spend[future_end] - index.cum_spend[before]
        inputs["pair_row"] = torch.arange(len(rows_k))
        inputs["pair_step"] = torch.from_numpy(np.maximum(lengths, 1) - 1)
        inputs["context"] = forecast_context(index, store, rows_k, before, cutoff)
        inputs["count"] = torch.from_numpy(count.astype(np.float32))
        inputs["spend"] = torch.from_numpy((np.maximum(spend, 0) / self.spend_scale).astype(np.float32))
        inputs["horizon"] = torch.from_numpy((window / DAY).astype(np.float32))
        inputs["weight"] = torch.from_numpy(weight)
        return inputs


class PredictCollate:
    """Rows -> the last ``max_len`` events of each customer (and forecast context as of ``as_of``)."""

    def __init__(self, store: SequenceStore, max_len: int, as_of: int, unit: str = "basket"):
        self.store, self.max_len, self.as_of, self.unit = store, max_len, as_of, unit

    def __call__(self, rows: list[int]) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        local = self.store.take(rows)  # this batch's customers: the context's lookups stay within them
        starts, lengths = last_events(local, np.arange(len(rows)), self.max_len)
        batch = gather(local, starts, lengths)
        batch["context"] = forecast_context(None, local, np.arange(len(rows)), local.offsets[1:],
                                            np.full(len(rows), self.as_of), self.unit)
        batch["rows"] = torch.from_numpy(rows)
        return batch


class SequenceDataModule(pl.LightningDataModule):
    """Train/validation CoLES batches and prediction batches over one store."""

    def __init__(self, store: SequenceStore, batch_size: int = 64, n_slices: int = 4, min_len: int = 16,
                 max_len: int = 64, predict_batch_size: int = 512, predict_max_len: int = 128,
                 val_fraction: float = 0.1, seed: int = 0, num_workers: int = 0, pin_memory: bool | str = "auto",
                 horizon_days: float | None = None, forecast_max_len: int | None = None, forecast_samples: int = 2,
                 as_of: int | None = None, unit: str | None = None):
        super().__init__()
        self.store = store  # per-event lookups are built per batch, over its customers only
        self.batch_size, self.predict_batch_size = batch_size, predict_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)
        self.as_of = as_of if as_of is not None else store.time_range()[1] + 1
        self.train_rows, self.val_rows = split_rows(store.customer_ids, val_fraction, seed)
        self.spend_scale = self._spend_scale()
        self.unit = unit or transaction_unit(store)  # a trained model's own, else the log's (see transactions)
        # forecast histories as long as predicted ones: the head sees the same kind of state in both
        self.train_collate = TrainCollate(store, n_slices, min_len, max_len, horizon_days,
                                          forecast_max_len or predict_max_len, self.spend_scale, forecast_samples,
                                          self.unit)
        self.predict_collate = PredictCollate(store, predict_max_len, self.as_of, self.unit)

    def _spend_scale(self) -> float:
        """Median purchase amount: forecast spend is learned in these units to keep losses well scaled."""
        amount = np.asarray(self.store.columns["amount"])[self.store.is_purchase()]
        amount = amount[np.isfinite(amount) & (amount > 0)]
        return float(np.median(amount)) if len(amount) else 1.0

    def _loader(self, rows, batch_size, collate, shuffle) -> DataLoader:
        return DataLoader(CustomerRows(rows), batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                          num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=False,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, self.batch_size, self.train_collate, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, self.batch_size, self.train_collate, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        # Length-bucketed: customers in order of history length, so a batch pads to little more than its own
        # longest history. The writer keeps each row's index, so the order never reaches the output.
        lengths = np.minimum(self.store.lengths(), self.predict_collate.max_len)
        rows = np.argsort(lengths, kind="stable")
        return self._loader(rows, self.predict_batch_size, self.predict_collate, shuffle=False)
