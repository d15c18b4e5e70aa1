"""The FastAPI app over a loaded bundle: segments, customers, real-time scoring, lookalikes, erasure, reload.

Reads are open; writes (DELETE /customers/{id}, POST /reload) need ``Authorization: Bearer <token>`` when a
token is configured, are refused (403) when none is unless ``open_writes`` is set, and run one at a time.
Each request takes the current bundle once, at its start: a reload loads the new bundle completely and
then swaps one reference, so requests in flight finish on the old one. Lookalike audiences are paged
(``offset``/``limit`` query parameters, ``next_offset`` in the answer); pages of one audience agree while
the bundle is unchanged. Serve from one process: erasure updates that process's memory and the bundle's
files, not other processes' copies.
"""

from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Annotated

import torch
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from engine import __version__
from engine.bundle import Bundle, BundleError, UnknownCustomer
from engine.bundle.bundle import BundleReplaced, StorageError
from engine.bundle.ledger import Ledger
from engine.data.events import EventLogError
from engine.embed.online import score_events, scorer
from engine.service import answers, recommend
from engine.service.schemas import (
    MAX_HORIZON_DAYS,
    MAX_RECOMMENDATIONS,
    CustomerAnswer,
    ErasedAnswer,
    HealthAnswer,
    LookalikeAnswer,
    LookalikeRequest,
    RecommendationsAnswer,
    RecommendRequest,
    ReloadAnswer,
    ReloadRequest,
    ScoreAnswer,
    ScoreRequest,
    SegmentAnswer,
    SegmentItemsAnswer,
    SegmentsAnswer,
    documented,
)

log = logging.getLogger(__name__)
WRITES_OFF = ("writes are off: this service has no token; set the environment variable SEGMENT_ENGINE_TOKEN "
              "or token_file=PATH, or open_writes=true to allow writes without one")
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_NAME = 255  # characters of one path component (the usual file-system limit)

MAX_PAGE = 100_000
MAX_ERRORS = 20  # validation errors listed per answer


class Service:
    """The bundle being served (swapped whole on reload) and the lock that serialises writes."""

    def __init__(self, bundle_path: str | Path, device: str, token: str | None, open_writes: bool = False,
                 bundle_root: str | Path | None = None, ledger: str | Path | None = None):
        self.device, self.token, self.open_writes = _check_device(device), token or None, open_writes
        self.write_lock = threading.Lock()
        self.ledger = Ledger.beside(bundle_path, ledger)
        self.pending: set[str] = set()  # erasures answered but not yet in the ledger (disk full)
        self.bundle = self.load(bundle_path)
        self.bundle_root = Path(bundle_root).resolve() if bundle_root is not None else self.bundle.path.parent
        if not self.bundle_root.is_dir():
            raise ValueError(f"bundle_root={bundle_root}: no such directory")

    def reload_path(self, given: str | None) -> Path:
        """The directory a reload may load: the current bundle's when none is given, else ``given`` resolved
        (symbolic links followed) if it lies under bundle_root; 422 for a malformed path, 403 outside."""
        if not given:
            return self.bundle.path
        if "\x00" in given or any(len(part) > MAX_NAME for part in Path(given).parts):
            raise HTTPException(422, f"bundle: not a usable path (a NUL, or a name over {MAX_NAME} characters)")
        path = Path(given).resolve()
        if not path.is_relative_to(self.bundle_root):
            raise HTTPException(403, f"bundle: {given} is not under the service's bundle_root "
                                     f"{self.bundle_root} (serve.py bundle_root=DIR widens it)")
        return path

    def load(self, path: str | Path) -> Bundle:
        """A bundle ready to answer at once: the erasure ledger applied, model loaded, scorer prepared."""
        self._record_pending()
        bundle = Bundle.load(path, device=self.device, eager_model=True,
                             erased=[*self.ledger.read(), *sorted(self.pending)])
        scorer(bundle)
        return bundle

    def erase(self, customer_id: str) -> None:
        """Erase from the ledger first (every later run and load honours it), then from the bundle. When
        train.py has replaced the served directory since it was loaded, the new bundle there is loaded
        (the ledger applied to it) and served instead. UnknownCustomer if the bundle does not hold them."""
        with self.write_lock:
            if customer_id not in self.bundle.customers.row:
                raise UnknownCustomer(customer_id)
            self.pending.add(customer_id)  # left out of every bundle this process loads, until recorded
            recorded = self._record_pending()
            try:
                self.bundle.erase(customer_id)
            except StorageError as err:
                if recorded:
                    raise
                raise StorageError(f"{err}; the erasure ledger {self.ledger.path} could not be written either: "
                                   "the customer is left out of this process's answers only") from err
            except BundleReplaced:
                log.warning("%s was replaced since it was loaded: loading the new bundle, with the erasure",
                            self.bundle.path)
                self.bundle = self.load(self.bundle.path)
            if not recorded:
                raise StorageError(f"{self.ledger.path}: customer {customer_id!r} is erased from the answers of "
                                   "this process, but the erasure ledger could not be written (disk full or "
                                   "read-only?): it is retried with the next write; free space, then erase again")

    def _record_pending(self) -> bool:
        """Append the pending erasures to the ledger; False (they stay pending) when the disk refuses."""
        try:
            for customer_id in sorted(self.pending):
                self.ledger.append(customer_id)
                self.pending.discard(customer_id)
        except OSError as err:
            log.error("%s: could not record %d erasure(s): %s", self.ledger.path, len(self.pending), err)
            return False
        return True


def _check_device(device: str) -> str:
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"device={device!r}: not a torch device (expected cpu or cuda[:N]): {err}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine (use device=cpu)")
    return device


def _error(status: int, message: str, **extra) -> JSONResponse:
    """Every error body: {"error": one sentence naming what was wrong, ...}."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(part) for part in e.get("loc", ())), "message": e.get("msg", "")}
        for e in err.errors()
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return _error(422, message or "invalid request", errors=errors[:MAX_ERRORS])


def _install_error_handlers(app: FastAPI) -> None:
    """Our exceptions become 4xx JSON bodies carrying their message; anything else a 500 with no traceback."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(
        HTTPException,
        lambda r, e: JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers),
    )
    for kind, status in (
        (UnknownCustomer, 404),
        (answers.UnknownSegment, 404),
        (EventLogError, 422),
        (ValueError, 422),
        (StorageError, 507),
        (BundleError, 409),
    ):
        app.add_exception_handler(kind, lambda r, e, status=status: _error(status, str(e)))

    @app.exception_handler(Exception)
    def _internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(err).__name__}")


DOCS_ASSETS = "/docs-assets"


def _install_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the assets fastapi-offline packages: they work without internet."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it, by its
    Content-Length or, without one, as soon as the streamed body passes the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            chunks.append(message)
            more = message.get("more_body", False)

        async def replay():
            return chunks.pop(0) if chunks else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = _error(413, f"request body over {self.limit:,} bytes (the service's max_body_bytes)")
        await response(scope, receive, send)


class _NoCustomerIds(logging.Filter):
    """Access-log lines name /customers/{id} instead of the customer id (the log outlives erasures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and \
                args[2].startswith("/customers/"):
            suffix = "/recommendations" if args[2].split("?")[0].endswith("/recommendations") else ""
            record.args = (*args[:2], "/customers/{id}" + suffix, *args[3:])
        return True


def scrub_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoCustomerIds) for f in access.filters):
        access.addFilter(_NoCustomerIds())


def current(request: Request) -> Bundle:
    """The bundle being served, taken once per request."""
    return request.app.state.service.bundle


def authorised(request: Request) -> None:
    """401 unless the request carries the configured token (writes only); with no token, 403 unless
    open_writes."""
    service = request.app.state.service
    token = service.token
    if token is None:
        if service.open_writes:
            return
        raise HTTPException(403, WRITES_OFF)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(
            401,
            "writes need the header 'Authorization: Bearer <token>' with the service's token",
            headers={"WWW-Authenticate": "Bearer"},
        )


Current = Annotated[Bundle, Depends(current)]
# documents the writes' scheme in OpenAPI; ``authorised`` checks the header itself (auto_error=False: no error here)
bearer = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="The service's token, from SEGMENT_ENGINE_TOKEN or token_file (writes only)")
WRITE = [Security(bearer), Depends(authorised)]
NOT_A_CUSTOMER, NOT_A_SEGMENT = (404, "unknown or erased customer"), (404, "unknown segment")


def create_app(bundle_path: str | Path, device: str = "cpu", token: str | None = None,
               open_writes: bool = False, bundle_root: str | Path | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, ledger: str | Path | None = None) -> FastAPI:
    """Load the bundle (BundleError if it is incomplete) and build the app serving it. Writes need the
    token; with none, they are refused unless open_writes (then anyone who reaches the port may write).
    POST /reload loads only bundles under ``bundle_root`` (default: the served bundle's parent directory);
    request bodies over ``max_body_bytes`` are refused (413). Erasures go to ``ledger`` (default:
    erasures.jsonl beside the bundle, where train.py reads them) before the bundle."""
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes={max_body_bytes}: expected a positive number of bytes")
    service = Service(bundle_path, device, token, open_writes, bundle_root, ledger)
    scrub_access_log()
    log.info("POST /reload loads bundles under %s only; request bodies up to %s bytes; erasures recorded in %s",
             service.bundle_root, f"{max_body_bytes:,}", service.ledger.path)
    if service.token is not None:
        log.info("writes (DELETE /customers/{id}, POST /reload) need the token")
    elif open_writes:
        log.warning("open_writes=true and no token: anyone who reaches this port may erase customers and "
                    "reload bundles")
    else:
        log.info("writes (DELETE /customers/{id}, POST /reload) are off: %s", WRITES_OFF)
    app = FastAPI(
        docs_url=None,  # served below from packaged assets: the defaults load Swagger UI and ReDoc from a CDN
        redoc_url=None,
        title="segment-engine",
        version=__version__,
        description="Customer segments, real-time scoring, lookalike audiences and erasure over one "
        "bundle. Writes need `Authorization: Bearer <token>`; without a token configured they are off "
        "(403) unless the service runs with open_writes=true.",
    )
    app.state.service = service
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    _install_error_handlers(app)
    _install_offline_docs(app)

    # Every answer is JSON-safe as engine.service.answers and .recommend build it, so it goes to JSONResponse
    # as it is: its model is documented (response_model=None, responses=documented(...)), never applied,
    # which would re-validate and re-encode it (1-3 ms on a list of 500 items, more on a lookalike page).
    @app.get("/health", summary="Bundle version, counts and path", response_model=None,
             responses=documented(HealthAnswer))
    def health(bundle: Current) -> JSONResponse:
        return JSONResponse(answers.health(bundle))

    @app.get("/segments", summary="Every segment with its profile and place in the hierarchy, plus the tree",
             response_model=None, responses=documented(SegmentsAnswer))
    def list_segments(bundle: Current) -> JSONResponse:
        return JSONResponse(answers.segments(bundle))

    @app.get("/segments/{segment_id}", summary="One segment", response_model=None,
             responses=documented(SegmentAnswer, NOT_A_SEGMENT, 422))
    def get_segment(segment_id: int, bundle: Current) -> JSONResponse:
        return JSONResponse(answers.segment(bundle, segment_id))

    @app.get("/segments/{segment_id}/items", summary="The items that over-index in a segment, with lift",
             response_model=None, responses=documented(SegmentItemsAnswer, NOT_A_SEGMENT, 422))
    def get_segment_items(
        segment_id: int,
        bundle: Current,
        n: Annotated[int, Query(ge=1, le=MAX_RECOMMENDATIONS)] = 20,
        min_share: Annotated[float, Query(ge=0, le=1)] = 0.05,
    ) -> JSONResponse:
        return JSONResponse(recommend.segment_items(bundle, segment_id, n, min_share))

    # before /customers/{id}: its path parameter would take "ID/recommendations" too
    @app.get("/customers/{customer_id:path}/recommendations",
             summary="The items a stored customer is most likely to buy next", response_model=None,
             responses=documented(RecommendationsAnswer, NOT_A_CUSTOMER, 409, 422))
    def get_recommendations(
        customer_id: str,
        bundle: Current,
        n: Annotated[int, Query(ge=1, le=MAX_RECOMMENDATIONS)] = 20,
        exclude_recent_days: Annotated[float, Query(ge=0, le=MAX_HORIZON_DAYS)] = 0.0,
        exclude_returned: bool = True,
        new_only: bool = False,
        category: Annotated[list[str] | None, Query()] = None,
    ) -> JSONResponse | dict:
        whole = f"{customer_id}/recommendations"
        if customer_id not in bundle.customers.row and whole in bundle.customers.row:
            return answers.customer(bundle, whole, None)  # a customer whose id ends in "/recommendations"
        f = recommend.filters(bundle, exclude_recent_days, new_only, category, exclude_returned)
        return JSONResponse(recommend.customer_recommendations(bundle, customer_id, n, f))

    @app.post("/recommend", summary="Recommendations in real time from recent events (a known customer's "
              "history comes first)", response_model=None,
              responses=documented(RecommendationsAnswer, 409, 413, 422))
    def recommend_now(body: RecommendRequest, bundle: Current) -> JSONResponse:
        f = recommend.filters(bundle, body.exclude_recent_days, body.new_only, body.categories,
                              body.exclude_returned)
        events = [vars(event) for event in body.events]
        return JSONResponse(recommend.events_recommendations(bundle, events, body.customer_id, body.n, f))

    @app.get("/customers/{customer_id:path}", summary="A customer's segment, hierarchy path and forecast",
             response_model=None, responses=documented(CustomerAnswer, NOT_A_CUSTOMER, 422))
    def get_customer(
        customer_id: str,
        bundle: Current,
        horizon_days: Annotated[float | None, Query(gt=0, le=MAX_HORIZON_DAYS)] = None,
    ) -> JSONResponse:
        return JSONResponse(answers.customer(bundle, customer_id, horizon_days))

    @app.post("/score", summary="Score events in real time (a known customer's history comes first)",
              response_model=None, responses=documented(ScoreAnswer, 413, 422))
    def score(body: ScoreRequest, bundle: Current, include_embedding: bool = False) -> JSONResponse:
        events = [vars(event) for event in body.events]  # the validated fields, not copied
        return JSONResponse(score_events(bundle, events, body.customer_id, include_embedding, body.horizon_days))

    @app.post("/lookalike", summary="The customers most like the seeds, ranked, one page at a time",
              response_model=None, responses=documented(LookalikeAnswer, NOT_A_SEGMENT, 413, 422))
    def lookalike(
        body: LookalikeRequest,
        bundle: Current,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10_000,
    ) -> JSONResponse:
        return JSONResponse(answers.audience(bundle, body, offset, limit))

    @app.delete(
        "/customers/{customer_id:path}",
        dependencies=WRITE,
        summary="Erase a customer from the bundle for good (GDPR)",
        response_model=None,
        responses=documented(ErasedAnswer, 401, 403, NOT_A_CUSTOMER, 422,
                             (409, "the served directory was replaced by a bundle that cannot be loaded"),
                             (507, "the erasure ledger could not be written (disk full?): the customer is "
                                   "already left out of this process's answers; erase again once there is space")),
    )
    def erase(customer_id: str) -> JSONResponse:
        service.erase(customer_id)
        return JSONResponse({"erased": customer_id})

    @app.post(
        "/reload",
        dependencies=WRITE,
        summary="Load a bundle (the current one again, or another) and switch to it atomically",
        response_model=None,
        responses=documented(ReloadAnswer, 401, 409, 413,
                             (403, "writes are off (no token and open_writes is false), or the bundle is not "
                                   "under the service's bundle_root"),
                             (422, "a malformed body, or a bundle path with a NUL or a name over 255 characters")),
    )
    def reload(body: ReloadRequest | None = None) -> JSONResponse:
        with service.write_lock:
            path = service.reload_path(body.bundle if body is not None else None)
            bundle = service.bundle = service.load(path)
        return JSONResponse({"reloaded": str(bundle.path), **answers.health(bundle)})

    return app
