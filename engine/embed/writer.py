"""Batch embedding of a whole base through Lightning's predict: each rank writes its own part file, rank 0
merges them after a barrier, so the same code runs on one CPU or under DDP across GPUs and nodes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)

FORECAST_COLUMNS = ("expected_purchases", "expected_spend", "p_churn")


class EmbeddingWriter(BasePredictionWriter):
    """Collects each batch's rows, embeddings and forecasts and writes ``parts_dir/rank-<r>/<name>.npy``.

    Nothing is kept in Lightning's own prediction list (return_predictions=False); at the end each array is
    concatenated and written in turn, its chunks freed first, so at most one extra copy exists at a time."""

    def __init__(self, parts_dir: str | os.PathLike):
        super().__init__(write_interval="batch")
        self.parts_dir = Path(parts_dir)
        self.chunks: dict[str, list[np.ndarray]] = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        for name, value in prediction.items():
            self.chunks.setdefault(name, []).append(value.detach().float().cpu().numpy()
                                                    if value.is_floating_point() else value.cpu().numpy())

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        part = self.parts_dir / f"rank-{trainer.global_rank}"
        part.mkdir(parents=True, exist_ok=True)
        for name in list(self.chunks):
            chunks = self.chunks.pop(name)
            np.save(part / f"{name}.npy", np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
            del chunks
        trainer.strategy.barrier("embedding parts written")


def merge_parts(parts_dir: str | os.PathLike, n_customers: int) -> dict[str, np.ndarray]:
    """Read every rank's part and place each value at its customer row; each row must appear (a sampler
    that pads ranks with repeated rows is tolerated: a repeat is the same customer, embedded again).

    Returns {"embedding": float32 [n, d], and forecast columns float32 [n] when present}; one array per
    name is allocated and filled part by part."""
    parts = sorted(p for p in Path(parts_dir).glob("rank-*") if p.is_dir())
    if not parts:
        raise RuntimeError(f"{parts_dir}: no embedding parts were written")
    rows = [np.load(p / "rows.npy").astype(np.int64) for p in parts]
    every = np.concatenate(rows)
    if len(every) and (every.min() < 0 or every.max() >= n_customers):
        raise RuntimeError(f"batch embedding wrote rows outside 0..{n_customers - 1}")
    covered = np.bincount(every, minlength=n_customers) > 0
    if not covered.all():
        missing = np.flatnonzero(~covered)
        raise RuntimeError(f"batch embedding covered {int(covered.sum())} of {n_customers} customers "
                           f"(missing rows {missing[:5].tolist()})")
    merged: dict[str, np.ndarray] = {}
    for name in sorted(f.stem for f in parts[0].glob("*.npy") if f.stem != "rows"):
        for part, part_rows in zip(parts, rows, strict=True):
            values = np.load(part / f"{name}.npy")
            if name not in merged:
                merged[name] = np.empty((n_customers, *values.shape[1:]), dtype=values.dtype)
            merged[name][part_rows] = values
            del values
    log.info("merged %d part(s): %d customers, %d repeated rows", len(parts), n_customers,
             len(every) - n_customers)
    return merged


def embed_base(trainer, model, datamodule, parts_dir: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Run predict with an EmbeddingWriter attached; returns merged arrays on rank 0, None elsewhere."""
    writer = next((c for c in trainer.callbacks if isinstance(c, EmbeddingWriter)), None)
    if writer is None:
        writer = EmbeddingWriter(parts_dir)
        trainer.callbacks.append(writer)
    writer.parts_dir = Path(parts_dir)
    with torch.inference_mode():
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return merge_parts(parts_dir, datamodule.store.n_customers)


def forecast_table(customer_ids: pa.Array, arrays: dict[str, np.ndarray]) -> pa.Table | None:
    """forecast.parquet's table, or None when the model has no forecasting head."""
    if not all(c in arrays for c in FORECAST_COLUMNS):
        return None
    columns = {"customer_id": customer_ids}
    columns.update({c: arrays[c].astype(np.float64) for c in FORECAST_COLUMNS})
    columns["p_alive"] = 1.0 - arrays["p_churn"].astype(np.float64)
    return pa.table(columns)


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    pq.write_table(table, path)
