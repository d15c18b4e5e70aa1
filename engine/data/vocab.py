"""Vocabularies for categorical event fields: id 0 is reserved for unknown (null, unseen or rare)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UNKNOWN = "<unk>"


def build_vocab(values: pa.ChunkedArray | pa.Array, min_count: int = 1) -> list[str]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties by token), after UNKNOWN."""
    counts = pc.value_counts(values)
    tokens = counts.field("values")
    freq = counts.field("counts").to_numpy()
    valid = pc.is_valid(tokens).to_numpy(zero_copy_only=False) & (freq >= min_count)
    tokens = np.asarray(tokens.to_numpy(zero_copy_only=False), dtype=object)[valid]
    freq = freq[valid]
    order = np.lexsort((tokens.astype(str), -freq)) if len(tokens) else np.array([], dtype=np.int64)
    return [UNKNOWN] + [str(t) for t in tokens[order]]


def encode(values: pa.ChunkedArray | pa.Array, vocab: list[str]) -> np.ndarray:
    """int32 ids of ``values`` in ``vocab`` (0 for null or tokens not in it)."""
    ids = pc.index_in(values, value_set=pa.array(vocab, pa.string()))
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    out = pc.fill_null(ids, 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return out
