"""Vocabularies for categorical event fields: id 0 is reserved for unknown (null, unseen or rare)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UNKNOWN = "<unk>"
BLOCK = 1 << 20


def build_vocab(values: pa.ChunkedArray | pa.Array, min_count: int = 1) -> list[str]:
    """Tokens seen at least ``min_count`` times, most frequent first (ties by token), after UNKNOWN."""
    counts = pc.value_counts(values)
    return vocab_from_counts(counts.field("values"), counts.field("counts").to_numpy(), min_count)


def vocab_from_counts(tokens: pa.Array, counts: np.ndarray, min_count: int = 1) -> list[str]:
    """The vocabulary of distinct ``tokens`` (string [n], nulls skipped) seen ``counts`` (int [n]) times."""
    valid = pc.is_valid(tokens).to_numpy(zero_copy_only=False) & (counts >= max(min_count, 1))
    tokens = np.asarray(tokens.to_numpy(zero_copy_only=False), dtype=object)[valid]
    freq = counts[valid]
    order = np.lexsort((tokens.astype(str), -freq)) if len(tokens) else np.array([], dtype=np.int64)
    return [UNKNOWN] + [str(t) for t in tokens[order]]


def encode(values: pa.ChunkedArray | pa.Array, vocab: list[str]) -> np.ndarray:
    """int32 ids of ``values`` in ``vocab`` (0 for null or tokens not in it)."""
    ids = pc.index_in(values, value_set=pa.array(vocab, pa.string()))
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    out = pc.fill_null(ids, 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return out


def rows_where(column: pa.ChunkedArray, test) -> np.ndarray | None:
    """bool [n]: the rows of a dictionary column whose value passes ``test`` (a string array -> bool array,
    nulls in it as False); None where none does. Only the dictionaries are tested, so a column whose
    dictionaries hold no such value costs no pass over its rows."""
    out, start = None, 0
    for chunk in column.chunks:
        hit = pc.fill_null(test(chunk.dictionary), False)
        if pc.any(hit).as_py():
            codes = pa.array(np.flatnonzero(hit.to_numpy(zero_copy_only=False)), chunk.indices.type)
            out = np.zeros(len(column), bool) if out is None else out
            rows = pc.fill_null(pc.is_in(chunk.indices, value_set=codes), False)
            out[start : start + len(chunk)] = rows.to_numpy(zero_copy_only=False)
        start += len(chunk)
    return out


@dataclass
class DictionaryCodes:
    """A string column as its distinct tokens plus, per chunk, dictionary indices and their token positions;
    only the chunks' dictionaries are ever hashed, never the n values.

    tokens: string [d] distinct, non-null; chunks: per chunk (indices: int [chunk rows], null -> its dictionary
    length; to_token: int64 [dictionary length + 1], d for null)."""

    tokens: pa.Array
    chunks: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> DictionaryCodes:
        """column: string or dictionary<string> chunks."""
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)  # its chunks share one dictionary
        dictionaries: list[pa.Array] = []
        first: dict[tuple, int] = {}  # a dictionary shared by several chunks is hashed once
        which = []
        for chunk in column.chunks:
            d = chunk.dictionary
            key = (d.offset, len(d), tuple(b.address if b is not None else 0 for b in d.buffers()))
            which.append(first.setdefault(key, len(dictionaries)))
            if which[-1] == len(dictionaries):
                dictionaries.append(d)
        values = pa.concat_arrays(dictionaries) if dictionaries else pa.array([], pa.string())
        encoded = pc.dictionary_encode(values.cast(pa.string()))
        tokens = encoded.dictionary
        positions = pc.fill_null(encoded.indices, len(tokens)).to_numpy().astype(np.int64)  # null entry: null
        starts = np.cumsum([0] + [len(d) for d in dictionaries])
        maps = [np.append(positions[starts[k] : starts[k + 1]], len(tokens)) for k in range(len(dictionaries))]
        chunks = []
        for chunk, k in zip(column.chunks, which, strict=True):
            indices = pc.fill_null(chunk.indices, len(maps[k]) - 1) if chunk.null_count else chunk.indices
            chunks.append((indices.to_numpy(), maps[k]))
        return cls(tokens, chunks)

    def counts(self) -> np.ndarray:
        """int64 [d + 1]: occurrences of each token; the last entry counts nulls."""
        counts = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        for indices, to_token in self.chunks:
            np.add.at(counts, to_token, np.bincount(indices, minlength=len(to_token)))
        return counts

    def map(self, table: np.ndarray) -> np.ndarray:
        """[n] table[token position] of every value; table: [d + 1], its last entry for null."""
        out = np.empty(sum(len(indices) for indices, _ in self.chunks), dtype=table.dtype)
        at = 0
        for indices, to_token in self.chunks:
            chunk_table = table[to_token]
            for lo in range(0, len(indices), BLOCK):  # numpy copies int32 indices to int64: a block at a time
                block = indices[lo : lo + BLOCK]
                out[at : at + len(block)] = chunk_table[block]
                at += len(block)
        return out
