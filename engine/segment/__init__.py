"""Segments: FAISS spherical k-means, the auto-k criterion, hierarchy, profiles and the HTML report."""

from engine.segment.hierarchy import Hierarchy, build_hierarchy, level_columns
from engine.segment.kmeans import (
    adjusted_rand_index,
    assign,
    choose_k,
    match_to_previous,
    silhouette_score,
    spherical_kmeans,
)
from engine.segment.profiles import segment_profiles
from engine.segment.report import write_report

__all__ = [
    "Hierarchy",
    "adjusted_rand_index",
    "assign",
    "build_hierarchy",
    "choose_k",
    "level_columns",
    "match_to_previous",
    "segment_profiles",
    "silhouette_score",
    "spherical_kmeans",
    "write_report",
]
