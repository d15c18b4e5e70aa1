"""Lightning data over a sequence store: CoLES views (and forecast pairs) for training, whole histories for
prediction. Workers read the memory-mapped store; every batch is gathered vectorized in the collate."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from engine.data.store import SequenceStore
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
                     as_of: np.ndarray) -> torch.Tensor:
    """float32 [B, CONTEXT_FEATURES], as of ``as_of`` over the events before ``hist_end`` (global index):
    log days since the last event, log events so far, log days since the first event, log purchases so far,
    in the last 30 and 90 days, log spend so far and in the last 90 days, log days since the last purchase
    (since the first event when none) and whether there was one."""
    index = index if index is not None else StoreIndex.build(store)
    ts = np.asarray(store.columns["ts"])
    begin = store.offsets[rows]
    last = ts[np.maximum(hist_end - 1, 0)]
    first = ts[np.minimum(begin, max(len(ts) - 1, 0))]

    def since(days: float) -> np.ndarray:
        return np.clip(index.first_at_or_after(rows, as_of - int(days * DAY)), begin, hist_end)

    purchases, spend = index.cum_purchases, index.cum_spend
    latest = index.last_purchase[hist_end]  # the latest purchase before hist_end, if it is this customer's
    bought = latest >= begin
    context = np.stack([
        np.log1p(np.maximum(as_of - last, 0) / DAY),
        np.log1p(hist_end - begin),
        np.log1p(np.maximum(as_of - first, 0) / DAY),
        np.log1p(purchases[hist_end] - purchases[begin]),
        np.log1p(purchases[hist_end] - purchases[since(30)]),
        np.log1p(purchases[hist_end] - purchases[since(90)]),
        np.log1p(np.maximum(spend[hist_end] - spend[begin], 0)),
        np.log1p(np.maximum(spend[hist_end] - spend[since(90)], 0)),
        np.log1p(np.maximum(as_of - np.where(bought, ts[np.maximum(latest, 0)], first), 0) / DAY),
        bought,
    ], axis=1)
    return torch.from_numpy(context.astype(np.float32))


class TrainCollate:
    """Rows -> CoLES views of each customer, plus (history before T, purchases in [T, T+H)) pairs when a
    forecast horizon is set. T is drawn per customer between their history's first event and end - H."""

    def __init__(self, store: SequenceStore, n_slices: int, min_len: int, max_len: int,
                 horizon_days: float | None, forecast_max_len: int, spend_scale: float,
                 forecast_samples: int = 1):
        self.store = store
        self.n_slices, self.min_len, self.max_len = n_slices, min_len, max_len
        self.horizon = None if not horizon_days else int(horizon_days * DAY)
        self.forecast_max_len = forecast_max_len
        self.forecast_samples = forecast_samples  # cutoffs drawn per customer and batch, in one history
        self.spend_scale = spend_scale
        self.end = store.time_range()[1] + 1

    def __call__(self, rows: list[int]) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        local = self.store.take(rows)  # this batch's customers: every lookup below stays within them
        starts, lengths, labels = random_slices(local, np.arange(len(rows)), self.n_slices, self.min_len,
                                                self.max_len, rng)
        batch = {"views": gather(local, starts, lengths), "labels": torch.from_numpy(labels),
                 "rows": torch.from_numpy(rows)}
        if self.horizon:
            batch["forecast"] = self.forecast_pairs(local, rng)
        return batch

    def forecast_pairs(self, store: SequenceStore, rng: np.random.Generator) -> dict:
        """One history per customer (its last ``forecast_max_len`` events with a whole horizon after them) and
        ``forecast_samples`` cutoffs T in it. Pair j is the prefix of history ``pair_row[j]`` up to event
        ``pair_step[j]`` (the last before T), with purchases and spend in [T, T + H): a causal encoder reads
        every pair's state from one pass over the history."""
        ts, index, rows = np.asarray(store.columns["ts"]), StoreIndex.build(store), np.arange(store.n_customers)
        hist_end = index.first_at_or_after(rows, np.full(len(rows), self.end - self.horizon))
        starts, lengths = last_events(store, rows, self.forecast_max_len, ends=hist_end)
        inputs = gather(store, starts, lengths)
        k = self.forecast_samples
        pair_row = np.repeat(np.arange(len(rows)), k)
        rows_k, starts_k = rows[pair_row], starts[pair_row]
        low = ts[np.minimum(starts_k, len(ts) - 1)] + 1  # after the history's first event
        high = np.full(len(rows_k), self.end - self.horizon)
        weight = ((high > low) & (lengths[pair_row] > 0)).astype(np.float32)
        # Half the cutoffs anywhere in the history, half in the last few horizons: the forecast is asked for
        # at the data's end, so recent behaviour (trends, churn) weighs more.
        recent = rng.random(len(rows_k)) < 0.5
        low = np.where(recent, np.maximum(low, high - 3 * self.horizon), low)
        cutoff = low + np.floor(rng.random(len(rows_k)) * np.maximum(high - low, 1)).astype(np.int64)
        before = np.clip(index.first_at_or_after(rows_k, cutoff), starts_k + 1, starts_k + np.maximum(
            lengths[pair_row], 1))
        future_end = index.first_at_or_after(rows_k, cutoff + self.horizon)
        count = index.cum_purchases[future_end] - index.cum_purchases[before]
        spend = index.cum_spend[future_end] - index.cum_spend[before]
        inputs["pair_row"] = torch.from_numpy(pair_row)
        inputs["pair_step"] = torch.from_numpy(before - starts_k - 1)
        inputs["context"] = forecast_context(index, store, rows_k, before, cutoff)
        inputs["count"] = torch.from_numpy(count.astype(np.float32))
        inputs["spend"] = torch.from_numpy((np.maximum(spend, 0) / self.spend_scale).astype(np.float32))
        inputs["weight"] = torch.from_numpy(weight)
        return inputs


class PredictCollate:
    """Rows -> the last ``max_len`` events of each customer (and forecast context as of ``as_of``)."""

    def __init__(self, store: SequenceStore, max_len: int, as_of: int):
        self.store, self.max_len, self.as_of = store, max_len, as_of

    def __call__(self, rows: list[int]) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        local = self.store.take(rows)  # this batch's customers: the context's lookups stay within them
        starts, lengths = last_events(local, np.arange(len(rows)), self.max_len)
        batch = gather(local, starts, lengths)
        batch["context"] = forecast_context(None, local, np.arange(len(rows)), local.offsets[1:],
                                            np.full(len(rows), self.as_of))
        batch["rows"] = torch.from_numpy(rows)
        return batch


class SequenceDataModule(pl.LightningDataModule):
    """Train/validation CoLES batches and prediction batches over one store."""

    def __init__(self, store: SequenceStore, batch_size: int = 64, n_slices: int = 4, min_len: int = 16,
                 max_len: int = 64, predict_batch_size: int = 512, predict_max_len: int = 128,
                 val_fraction: float = 0.1, seed: int = 0, num_workers: int = 0, pin_memory: bool | str = "auto",
                 horizon_days: float | None = None, forecast_max_len: int | None = None, forecast_samples: int = 2,
                 as_of: int | None = None):
        super().__init__()
        self.store = store  # per-event lookups are built per batch, over its customers only
        self.batch_size, self.predict_batch_size = batch_size, predict_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)
        self.as_of = as_of if as_of is not None else store.time_range()[1] + 1
        self.train_rows, self.val_rows = split_rows(store.customer_ids, val_fraction, seed)
        self.spend_scale = self._spend_scale()
        # forecast histories as long as predicted ones: the head sees the same kind of state in both
        self.train_collate = TrainCollate(store, n_slices, min_len, max_len, horizon_days,
                                          forecast_max_len or predict_max_len, self.spend_scale, forecast_samples)
        self.predict_collate = PredictCollate(store, predict_max_len, self.as_of)

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
