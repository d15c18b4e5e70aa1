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
    """Collects each batch's rows, embeddings and forecasts and writes ``parts_dir/rank-<r>.npz`` per rank.

    Nothing is kept in Lightning's own prediction list (return_predictions=False), so memory stays flat."""

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
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.concatenate(chunks) for name, chunks in self.chunks.items()}
        part = self.parts_dir / f"rank-{trainer.global_rank}.npz"
        np.savez(part, **arrays)
        self.chunks = {}
        trainer.strategy.barrier("embedding parts written")


def merge_parts(parts_dir: str | os.PathLike, n_customers: int) -> dict[str, np.ndarray]:
    """Read every rank's part and order by customer row; each row must appear exactly once (a sampler that
    pads ranks with repeated rows is tolerated: repeats must be equal and are dropped).

    Returns {"embedding": float32 [n, d], and forecast columns float32 [n] when present}."""
    parts = sorted(Path(parts_dir).glob("rank-*.npz"))
    if not parts:
        raise RuntimeError(f"{parts_dir}: no embedding parts were written")
    loaded = [dict(np.load(p)) for p in parts]
    rows = np.concatenate([p["rows"] for p in loaded]).astype(np.int64)
    unique, first = np.unique(rows, return_index=True)
    if len(unique) != n_customers or unique[0] != 0 or unique[-1] != n_customers - 1:
        missing = np.setdiff1d(np.arange(n_customers), unique)
        raise RuntimeError(f"batch embedding covered {len(unique)} of {n_customers} customers "
                           f"(missing rows {missing[:5].tolist()})")
    merged = {}
    for name in loaded[0]:
        if name == "rows":
            continue
        values = np.concatenate([p[name] for p in loaded])
        merged[name] = values[first]  # np.unique sorts: row r's values land at position r
    log.info("merged %d part(s): %d customers, %d repeated rows dropped", len(parts), n_customers,
             len(rows) - len(unique))
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
