"""The service's answers as JSON-safe dicts, each computed from one ``bundle.customers`` taken once, so an
erasure or reload in the middle of a request never mixes two versions."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa

from engine.bundle import Bundle, UnknownCustomer
from engine.forecast.process import forecast_answer
from engine.index import signature
from engine.index.lookalike import audience_size, best_rows, lookalike
from engine.segment.hierarchy import Hierarchy
from engine.service.schemas import LookalikeRequest

JSON_COLUMNS = ("channel_mix",)  # profile columns stored as JSON strings
MAX_ECHOED = 100  # unknown seed ids listed per lookalike answer (unknown_seed_count counts them all)


class UnknownSegment(KeyError):
    def __init__(self, segment: int, k: int):
        super().__init__(segment)
        self.segment, self.k = segment, k

    def __str__(self) -> str:
        return f"segment {self.segment} does not exist (this bundle has segments 0..{self.k - 1})"


def json_safe(value):
    """Python values with NaN/inf as None and numpy scalars/arrays as plain numbers/lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def path_of(hierarchy: Hierarchy, segment: int) -> list[dict]:
    """[{"level": L, "group": g}, ...] from the coarsest level down to the segment itself (level k)."""
    return [
        {"level": int(level), "group": group}
        for level, group in zip(hierarchy.levels, hierarchy.path(segment), strict=True)
    ]


def health(bundle: Bundle) -> dict:
    c = bundle.customers
    m = bundle.manifest
    return {
        "status": "ok",
        "bundle": str(bundle.path),
        "format": m.get("format"),
        "engine_version": m.get("engine_version"),
        "created": m.get("created"),
        "counts": {"customers": c.n, "segments": bundle.k, "events": c.store.n_events},
        "forecast": c.forecast is not None,
        "as_of": bundle.as_of,
        "horizon_days": m.get("horizon_days"),
        "device": bundle.device,
    }


def customer(bundle: Bundle, customer_id: str, horizon_days: float | None = None) -> dict:
    """Segment, path and forecast of a stored customer; the forecast answers ``horizon_days`` (default the
    bundle's forecast.horizon_days) from the customer's fitted purchase process (engine.forecast.process)."""
    c = bundle.customers
    row = c.row.get(customer_id)
    if row is None:
        raise UnknownCustomer(customer_id)
    facts = c.segments.slice(row, 1).to_pylist()[0]
    segment, similarity = int(facts["segment"]), float(facts["similarity"])
    answer = {
        "customer_id": customer_id,
        "segment": segment,
        "similarity": similarity,
        "distance": 1.0 - similarity,
        "path": path_of(c.hierarchy, segment),
        "forecast": None,
    }
    if c.forecast is not None:
        f = c.forecast.slice(row, 1).to_pylist()[0]
        answer["forecast"] = {"as_of": bundle.as_of, **forecast_answer(f, bundle.forecast_meta, horizon_days)}
    return json_safe(answer)


def _profiles(profiles: pa.Table) -> dict[int, dict]:
    rows = profiles.to_pylist()
    for row in rows:
        for name in JSON_COLUMNS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return {int(row["segment"]): row for row in rows}


def segments(bundle: Bundle) -> dict:
    c = bundle.customers
    profiles = _profiles(c.profiles)
    sizes = c.hierarchy.sizes if c.hierarchy.sizes is not None else np.zeros(bundle.k, np.int64)
    listed = [
        {"segment": s, "size": int(sizes[s]), "path": path_of(c.hierarchy, s), "profile": profiles.get(s)}
        for s in range(bundle.k)
    ]
    return json_safe({"levels": c.hierarchy.levels, "segments": listed, "tree": c.hierarchy.tree()})


def segment(bundle: Bundle, segment_id: int) -> dict:
    if not 0 <= segment_id < bundle.k:
        raise UnknownSegment(segment_id, bundle.k)
    c = bundle.customers
    profile = _profiles(c.profiles).get(segment_id)
    size = int(c.hierarchy.sizes[segment_id]) if c.hierarchy.sizes is not None else None
    return json_safe(
        {"segment": segment_id, "size": size, "path": path_of(c.hierarchy, segment_id), "profile": profile}
    )


def _rows(row: dict[str, int], ids: list[str]) -> np.ndarray:
    """int64 row of each id, -1 for ids not in the bundle."""
    return np.fromiter((row.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))


def audience(bundle: Bundle, request: LookalikeRequest, offset: int, limit: int) -> dict:
    """The ranked audience (seeds and excluded ids never in it), one page of it: [offset, offset + limit)."""
    c = bundle.customers
    size = audience_size(request.size, request.fraction, c.n)
    unknown: list[str] = []
    if request.segment is not None:
        if request.segment >= bundle.k:
            raise UnknownSegment(request.segment, bundle.k)
        seeds = np.flatnonzero(c.segments["segment"].to_numpy() == request.segment)
        if len(seeds) == 0:
            raise ValueError(f"segment: segment {request.segment} has no customers to use as seeds")
    else:
        rows = _rows(c.row, request.seed_ids)
        seeds = np.unique(rows[rows >= 0])
        unknown = [i for i, r in zip(request.seed_ids, rows, strict=True) if r < 0]
        if len(seeds) == 0:
            raise ValueError(
                f"seed_ids: none of the {len(request.seed_ids)} ids is a customer of this bundle "
                "(unknown or erased)"
            )
    exclude = _rows(c.row, request.exclude_ids)
    exclude = np.setdiff1d(exclude[exclude >= 0], seeds)
    available = c.n - len(seeds) - len(exclude)
    ranked, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    explained = None
    if available > 0 and request.method == "signature":
        weights = bundle.lookalike_weights
        features = c.signature_features(bundle.as_of, weights)
        vectors, norms = c.sequence_vectors(bundle.representation)
        ranked, scores = best_rows(
            signature.scores(features, seeds, weights, vectors=vectors, norms=norms),
            np.union1d(seeds, exclude),
            size,
        )
        explained = signature.explain(features, seeds)
    elif available > 0:
        ranked, scores = lookalike(
            c.index, c.embeddings, seeds, min(size, available), exclude, request.method
        )
    page = slice(offset, offset + limit)
    ids = c.ids.take(pa.array(ranked[page])).to_pylist()
    end = offset + len(ids)
    return json_safe(
        {
            "audience": [
                {"customer_id": i, "score": float(s)} for i, s in zip(ids, scores[page], strict=True)
            ],
            "size": len(ranked),
            "requested": size,
            "offset": offset,
            "limit": limit,
            "next_offset": end if end < len(ranked) else None,
            "seeds": len(seeds),
            "unknown_seed_ids": unknown[:MAX_ECHOED],  # the first ones: a long list of typos is not echoed whole
            "unknown_seed_count": len(unknown),
            "method": request.method,
            "signature": explained,
        }
    )
