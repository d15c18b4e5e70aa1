"""Request bodies of the service. Every field is typed and bounded, so a malformed request is a 422 that names
the field before any work is done."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

MAX_EVENTS = 10_000  # per scoring request
MAX_IDS = 1_000_000  # seed or excluded ids per lookalike request
EPOCH_LIMIT = 10**15  # |epoch| in seconds or milliseconds


def _timestamp(value):
    """An ISO 8601 string or a finite epoch number, as sent (engine.embed.online parses it)."""
    if isinstance(value, str) and 1 <= len(value) <= 64:
        return value
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= EPOCH_LIMIT
    ):
        return value
    raise ValueError("expected an ISO 8601 string like '2024-03-01T12:30:00Z' or epoch seconds/milliseconds")


Token = Annotated[str, Field(min_length=1, max_length=1024)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Timestamp = Annotated[
    Any,
    PlainValidator(_timestamp),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]


class Event(BaseModel):
    """One event, in the event log's fields. ts: ISO 8601 (no zone = UTC) or epoch seconds/milliseconds."""

    model_config = ConfigDict(extra="forbid")

    ts: Timestamp
    event_type: Token
    item_id: Token | None = None
    category: Token | None = None
    amount: Number | None = None
    quantity: Number | None = None
    channel: Token | None = None


MAX_HORIZON_DAYS = 36_500  # a century: a forecast horizon in days


class ScoreRequest(BaseModel):
    """A known customer's new events are appended to their stored history; otherwise a new customer."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Token | None = None
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)
    horizon_days: float | None = Field(default=None, gt=0, le=MAX_HORIZON_DAYS)  # default: the bundle's


MAX_RECOMMENDATIONS = 500


class RecommendRequest(BaseModel):
    """Recent events of a customer (a known customer's are appended to their stored history) and what to
    leave out of the list."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Token | None = None
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)
    n: int = Field(default=20, ge=1, le=MAX_RECOMMENDATIONS)
    exclude_recent_days: float = Field(default=0.0, ge=0, le=MAX_HORIZON_DAYS)
    exclude_returned: bool = True
    new_only: bool = False
    categories: list[Token] | None = Field(default=None, min_length=1, max_length=10_000)


class LookalikeRequest(BaseModel):
    """Seeds (customer ids, or every member of a segment), and how many to return: size or fraction."""

    model_config = ConfigDict(extra="forbid")

    seed_ids: list[Token] | None = Field(None, min_length=1, max_length=MAX_IDS)
    segment: Annotated[int, Field(ge=0)] | None = None
    size: Annotated[int, Field(gt=0)] | None = None
    fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    exclude_ids: list[Token] = Field(default_factory=list, max_length=MAX_IDS)
    method: Literal["signature", "nearest_seeds", "centroid", "knn_vote"] = "signature"

    @model_validator(mode="after")
    def _one_of_each(self) -> LookalikeRequest:
        if (self.seed_ids is None) == (self.segment is None):
            raise ValueError(
                "give exactly one of seed_ids (a non-empty list of customer ids) or segment (an id)"
            )
        if (self.size is None) == (self.fraction is None):
            raise ValueError("give exactly one of size (customers) or fraction (of the base, in (0, 1])")
        return self


class ReloadRequest(BaseModel):
    """bundle: the directory to serve from now on; omitted = reload the current one."""

    model_config = ConfigDict(extra="forbid")

    bundle: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


# The answers, as OpenAPI documents them. The routes hand out the dicts of engine.service.answers and
# engine.service.recommend as they are (never re-validated: /score and /lookalike answers can be large);
# tests/service/test_service_openapi.py validates real answers against these models.


class Answer(BaseModel):
    """An answer's fields, all of them: a field the service adds must be declared here too."""

    model_config = ConfigDict(extra="forbid")


def _example(example: dict) -> ConfigDict:
    """An answer's example; no null in it, since FastAPI leaves every None out of the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class FieldError(Answer):
    field: str  # dotted location: body.events.0.ts, query.n, path.segment_id
    message: str


class ErrorBody(Answer):
    """Every error: one sentence naming what was wrong; a 422 also lists the fields (at most 20)."""

    model_config = _example({"error": "body.size: Input should be greater than 0",
                             "errors": [{"field": "body.size", "message": "Input should be greater than 0"}]})

    error: str
    errors: list[FieldError] | None = None


class Counts(Answer):
    customers: int
    segments: int
    events: int


HEALTH = {"status": "ok", "bundle": "/srv/bundles/outputs/bundle", "format": 1, "engine_version": "0.1.0",
          "created": "2025-01-02T04:57:13Z", "counts": {"customers": 300, "segments": 6, "events": 18487},
          "forecast": True, "as_of": 1735602578, "horizon_days": 30.0, "device": "cpu"}


class HealthAnswer(Answer):
    model_config = _example(HEALTH)

    status: Literal["ok"]
    bundle: str  # the served directory
    format: int | None
    engine_version: str | None
    created: str | None  # ISO 8601, UTC
    counts: Counts
    forecast: bool  # whether the bundle has a forecasting head
    as_of: int  # epoch seconds: the bundle's data runs up to here
    horizon_days: float | None
    device: str


class ReloadAnswer(HealthAnswer):
    model_config = _example({"reloaded": "/srv/bundles/2025-01-02", **HEALTH})

    reloaded: str


class ErasedAnswer(Answer):
    model_config = _example({"erased": "c0000042"})

    erased: str


class PathStep(Answer):
    level: int  # a level of the hierarchy (its number of groups); the last is the segment itself
    group: int


class Forecast(Answer):
    """Over the next ``horizon_days`` from ``as_of`` (epoch seconds); transactions counted in ``unit``."""

    as_of: int
    expected_purchases: float
    expected_spend: float
    p_buy: float
    p_churn: float
    p_alive: float
    lifetime_value: float
    rate: float  # transactions per day while alive
    spend_rate: float  # money per day while alive
    horizon_days: float
    unit: str


FORECAST = {"as_of": 1735602578, "expected_purchases": 6.75, "expected_spend": 241.97, "p_buy": 0.956,
            "p_churn": 0.044, "p_alive": 0.957, "lifetime_value": 25988.3, "rate": 0.235, "spend_rate": 8.43,
            "horizon_days": 30.0, "unit": "day"}
PATH = [{"level": 4, "group": 3}, {"level": 6, "group": 4}]


class CustomerAnswer(Answer):
    model_config = _example({"customer_id": "c0000000", "segment": 4, "similarity": 0.937, "distance": 0.063,
                             "path": PATH, "forecast": FORECAST})

    customer_id: str
    segment: int
    similarity: float  # cosine similarity to the segment's centroid
    distance: float  # 1 - similarity
    path: list[PathStep]
    forecast: Forecast | None  # None: the bundle has no forecasting head


Mean = float | None  # None: an empty segment


class Profile(BaseModel):
    """A segment's profile (engine.segment.profiles, engine.segment.describe); ``mean_<column>`` fields
    (forecasts, tenure, ...) vary with the bundle, and bundles older than the descriptions lack them."""

    model_config = ConfigDict(extra="allow")

    segment: int
    size: int
    share: float
    median_recency_days: Mean
    mean_recency_days: Mean
    mean_frequency: Mean
    mean_spend: Mean
    total_spend: float
    mean_n_events: Mean
    spend_lift: Mean
    frequency_lift: Mean
    top_categories: list[str]
    top_items: list[str]
    channel_mix: dict[str, float]  # channel: share of the segment's customers
    name: str | None = None
    description: str | None = None
    value_tier: str | None = None
    distinctive_categories: list[str] | None = None
    category_lift: list[float] | None = None
    distinctive_items: list[str] | None = None
    item_lift: list[float] | None = None
    distinctive_channels: list[str] | None = None
    channel_lift: list[float] | None = None
    median_days_between_purchases: Mean = None
    lapsing_share: Mean = None


PROFILE = {"segment": 2, "size": 48, "share": 0.16, "median_recency_days": 9.96, "mean_recency_days": 10.35,
           "mean_frequency": 18.35, "mean_spend": 711.87, "total_spend": 34169.68, "mean_n_events": 102.7,
           "spend_lift": 1.88, "frequency_lift": 1.76, "top_categories": ["cat34", "cat06"],
           "top_items": ["i00525", "i01146"], "channel_mix": {"web": 0.46, "store": 0.31, "app": 0.23},
           "name": "high value, fortnightly shoppers: cat39, cat27", "value_tier": "high",
           "description": "16% of customers, high value, buying fortnightly; over-index on cat39 ×4.2",
           "mean_p_alive": 0.946}
SEGMENT = {"segment": 2, "size": 48, "path": [{"level": 4, "group": 1}, {"level": 6, "group": 2}],
           "profile": PROFILE}


class SegmentAnswer(Answer):
    model_config = _example(SEGMENT)

    segment: int
    size: int | None
    path: list[PathStep]
    profile: Profile | None


class TreeNode(Answer):
    """A group of the hierarchy: the root is level 1, id 0 (every customer), the leaves are the segments."""

    level: int
    id: int
    size: int | None = None  # absent when the bundle does not know the sizes
    children: list[TreeNode]


class SegmentsAnswer(Answer):
    model_config = _example({"levels": [4, 6], "segments": [SEGMENT], "tree": {
        "level": 1, "id": 0, "size": 300, "children": [{"level": 4, "id": 1, "size": 48, "children": [
            {"level": 6, "id": 2, "size": 48, "children": []}]}]}})

    levels: list[int]
    segments: list[SegmentAnswer]
    tree: TreeNode


class SegmentItem(Answer):
    item_id: str
    category: str | None
    buyers: int  # customers of the segment who bought it
    share: float  # of the segment's customers
    base_share: float  # of the whole base
    lift: float  # share / base_share


class SegmentItemsAnswer(Answer):
    model_config = _example({"segment": 2, "size": 48, "min_share": 0.05, "items": [
        {"item_id": "i00774", "category": "cat39", "buyers": 9, "share": 0.1875, "base_share": 0.05,
         "lift": 3.75}]})

    segment: int
    size: int
    min_share: float
    items: list[SegmentItem]


class RecommendedItem(Answer):
    item_id: str
    rank: int  # from 1
    score: float
    category: str | None
    bought_before: bool
    last_bought: int | None  # epoch seconds of their latest purchase of it


class RecommendFilters(Answer):
    exclude_recent_days: float
    exclude_returned: bool
    new_only: bool
    categories: list[str] | None


class RecommendationsAnswer(Answer):
    model_config = _example({
        "customer_id": "c0000000", "known": True, "as_of": 1735602578, "history_events": 177,
        "filters": {"exclude_recent_days": 0.0, "exclude_returned": True, "new_only": False,
                    "categories": ["cat34"]},
        "items": [{"item_id": "i00312", "rank": 1, "score": 4.49, "category": "cat34", "bought_before": True,
                   "last_bought": 1729184230}]})

    customer_id: str | None  # None: a new customer (POST /recommend without one)
    known: bool  # whether the bundle's stored history came first
    as_of: int
    history_events: int
    filters: RecommendFilters
    items: list[RecommendedItem]


class NearSegment(Answer):
    segment: int
    similarity: float


class ScoreAnswer(Answer):
    model_config = _example({
        "customer_id": "c0000000", "known": True, "history_events": 177, "events_used": 128, "segment": 4,
        "similarity": 0.937, "path": PATH, "nearest_segments": [{"segment": 4, "similarity": 0.937},
                                                                {"segment": 2, "similarity": 0.629}],
        "forecast": FORECAST})

    customer_id: str | None
    known: bool
    history_events: int
    events_used: int  # the latest ones, up to the bundle's predict_max_len
    segment: int
    similarity: float
    path: list[PathStep]
    nearest_segments: list[NearSegment]
    forecast: Forecast | None
    embedding: list[float] | None = None  # only with ?include_embedding=true


class AudienceMember(Answer):
    customer_id: str
    score: float


class SignatureFeature(Answer):
    feature: str
    z: float
    seed_mean: float
    base_mean: float


class LookalikeAnswer(Answer):
    model_config = _example({
        "audience": [{"customer_id": "c0000286", "score": 0.547}, {"customer_id": "c0000223", "score": 0.484}],
        "size": 10, "requested": 10, "offset": 0, "limit": 2, "next_offset": 2, "seeds": 5,
        "unknown_seed_ids": ["zz"], "unknown_seed_count": 1, "method": "signature",
        "signature": [{"feature": "category:cat12", "z": 6.73, "seed_mean": 0.855, "base_mean": 0.073}]})

    audience: list[AudienceMember]  # this page, best first
    size: int  # of the whole audience
    requested: int
    offset: int
    limit: int
    next_offset: int | None  # None: the last page
    seeds: int
    unknown_seed_ids: list[str]  # the first 100
    unknown_seed_count: int
    method: Literal["signature", "nearest_seeds", "centroid", "knn_vote"]
    signature: list[SignatureFeature] | None  # method "signature" only


ERRORS = {
    401: "a write without the service's token: send 'Authorization: Bearer <token>'",
    403: "writes are off: no token is configured and open_writes is false (the message says how to turn them on)",
    404: "unknown or erased customer, or unknown segment (the message names it)",
    409: "the bundle cannot be (re)loaded, or lacks what the answer needs (the message names the file)",
    413: "request body over the service's max_body_bytes (default 4 MiB), refused before it is parsed",
    422: "a malformed request: the message names the field, and errors lists each one (at most 20)",
    500: "internal error: logged with its traceback; the body names only the exception's type",
}


def documented(answer: type[BaseModel], *errors: int | tuple[int, str]) -> dict:
    """A route's OpenAPI ``responses``: its answer (documented only, never validated) and its errors, each an
    ErrorBody, described by ERRORS or by the (status, description) given; every route may answer 500."""
    described = dict(e if isinstance(e, tuple) else (e, ERRORS[e]) for e in (*errors, 500))
    return {200: {"model": answer}, **{code: {"model": ErrorBody, "description": described[code]}
                                       for code in sorted(described)}}
