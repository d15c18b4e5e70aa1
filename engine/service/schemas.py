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
