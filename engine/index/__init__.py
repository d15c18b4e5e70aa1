"""Nearest-neighbour index over customer embeddings and lookalike audiences."""

from engine.index.index import (
    build_index,
    index_kind,
    load_index,
    rebuild_without,
    remove_ids,
    save_index,
    search,
)
from engine.index.lookalike import audience_size, evaluate_lookalike, lookalike

__all__ = [
    "audience_size",
    "build_index",
    "evaluate_lookalike",
    "index_kind",
    "load_index",
    "lookalike",
    "rebuild_without",
    "remove_ids",
    "save_index",
    "search",
]
