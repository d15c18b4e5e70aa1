"""The per-rank embedding parts: written batch by batch, merged a block of rows at a time."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.embed import writer as embed_writer
from engine.embed.writer import EmbeddingWriter, merge_parts


def _write(parts: Path, rank: int, batches: list[np.ndarray], dim: int = 4) -> None:
    """One rank's predict epoch: each batch's rows, embeddings (row id in every column) and a forecast."""
    trainer = SimpleNamespace(global_rank=rank, strategy=SimpleNamespace(barrier=lambda name: None))
    w = EmbeddingWriter(parts)
    w.on_predict_epoch_start(trainer, None)
    for i, rows in enumerate(batches):
        prediction = {"rows": torch.as_tensor(rows),
                      "embedding": torch.as_tensor(rows, dtype=torch.float32)[:, None].repeat(1, dim),
                      "p_churn": torch.as_tensor(rows, dtype=torch.float64) / 100}
        w.write_on_batch_end(trainer, None, prediction, None, None, i)
    w.on_predict_epoch_end(trainer, None)


def test_two_ranks_merge_into_row_order_across_blocks(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    _write(parts, 0, [np.array([5, 0, 2]), np.array([7, 9])])
    _write(parts, 1, [np.array([1, 3, 4, 6]), np.array([8, 2])])  # row 2 repeated: a padded sampler
    assert not list(parts.rglob("*.raw"))
    assert np.load(parts / "rank-1" / "embedding.npy").shape == (6, 4)
    monkeypatch.setattr(embed_writer, "_row_blocks", _small_blocks(2))  # blocks smaller than a part
    merged = merge_parts(parts, 10, ranks=2)
    assert np.array_equal(merged["embedding"], np.arange(10, dtype=np.float32)[:, None].repeat(4, 1))
    assert merged["p_churn"].dtype == np.float32  # floating outputs are written as float32
    assert np.allclose(merged["p_churn"], np.arange(10) / 100)


def test_parts_of_a_larger_earlier_run_are_left_out(tmp_path):
    parts = tmp_path / "parts"
    _write(parts, 0, [np.array([0, 1, 2])])
    _write(parts, 1, [np.array([0, 1])])  # stale: an earlier run over two processes
    _write(parts, 0, [np.array([2, 1, 0])])  # this run: one process, its part rewritten
    merged = merge_parts(parts, 3, ranks=1)
    assert np.array_equal(merged["embedding"][:, 0], [0, 1, 2])


def test_a_missing_customer_is_named(tmp_path):
    parts = tmp_path / "parts"
    _write(parts, 0, [np.array([0, 1, 3])])
    with pytest.raises(RuntimeError, match=r"covered 3 of 4 customers \(missing rows \[2\]\)"):
        merge_parts(parts, 4, ranks=1)


def test_a_batch_of_another_shape_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match=r"embedding: a batch gave float32 \(3,\), earlier batches float32 \(4,\)"):
        trainer = SimpleNamespace(global_rank=0, strategy=SimpleNamespace(barrier=lambda name: None))
        w = EmbeddingWriter(tmp_path)
        w.on_predict_epoch_start(trainer, None)
        w.write_on_batch_end(trainer, None, {"embedding": torch.zeros(2, 4)}, None, None, 0)
        w.write_on_batch_end(trainer, None, {"embedding": torch.zeros(2, 3)}, None, None, 1)


def _small_blocks(rows: int):
    original = embed_writer._row_blocks
    return lambda path, rows_=rows: original(path, rows_)
