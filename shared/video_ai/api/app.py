"""FastAPI app: POST /analyze, jobs, frames, shots, search, health, metrics.

Imports here stay light (no cv2/av/onnxruntime/qdrant_client): the index and the embedder are built on first use by
the routes that need them, so the cold path of `POST /analyze` never pays for them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from video_ai.api.auth import ApiKeyAuth
from video_ai.api.fastapi_compat import skip_unused_pydantic_v1_check
from video_ai.api.owners import FinishedOwners
from video_ai.api.schemas import (
    Accepted,
    AnalyzeRequest,
    ErrorResponse,
    FramesPage,
    JobsPage,
    SearchRequest,
    SearchResponse,
    ShotsPage,
)
from video_ai.domain.errors import Conflict, InvalidRequest, JobNotFound, VideoAIError
from video_ai.domain.models import (
    PRIVATE_JOB_FIELDS,
    Frame,
    Job,
    ModelInfo,
    MomentFilter,
    MomentHit,
    Sampling,
    SearchFilter,
    Source,
)
from video_ai.domain.ports import (
    ArtifactStore,
    Embedder,
    JobQueue,
    JobRepository,
    Metrics,
    MomentIndex,
    Notifier,
    NullMetrics,
    TextEmbedder,
    ThumbnailStore,
    VectorIndex,
    VideoLinks,
)
from video_ai.services.submit_job import AllowAll, SubmitDeps, SubmitJob, UrlGuard, submit_job
from video_ai.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ApiContext:
    """What the routes need; built once per container by a composition root. Heavy parts are factories."""

    settings: Settings
    jobs: JobRepository
    queue: JobQueue
    auth: ApiKeyAuth
    index_factory: Callable[[], VectorIndex]
    embedder_factory: Callable[[], Embedder]
    notifier_factory: Callable[[], Notifier] | None = None
    guard: UrlGuard = field(default_factory=AllowAll)
    metrics: Metrics = field(default_factory=NullMetrics)
    # The text index of moments and its sentence model (None: no text search here).
    moments_factory: Callable[[], MomentIndex | None] | None = None
    text_embedder_factory: Callable[[], TextEmbedder] | None = None
    # Presigned playback URLs for S3 sources (None: the page cannot play them here).
    links_factory: Callable[[], VideoLinks] | None = None
    # Per-frame JPEGs (None, or a factory returning None: no thumbnails here).
    thumbnails_factory: Callable[[], ThumbnailStore | None] | None = None
    # Per-job results too big for the record: transcript.json, text.json (None: none kept here).
    artifacts_factory: Callable[[], ArtifactStore | None] | None = None
    # Tenants of finished jobs this container has read, for the thumbnail route (api/owners.py says why it is safe).
    owners: FinishedOwners = field(default_factory=FinishedOwners)
    _index: VectorIndex | None = None
    _embedder: Embedder | None = None

    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = self.index_factory()
        return self._index

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.embedder_factory()
        return self._embedder

    def moments(self) -> MomentIndex | None:
        return self.moments_factory() if self.moments_factory is not None else None

    def thumbnails(self) -> ThumbnailStore | None:
        return self.thumbnails_factory() if self.thumbnails_factory is not None else None

    def artifacts(self) -> ArtifactStore | None:
        return self.artifacts_factory() if self.artifacts_factory is not None else None

    def model(self) -> ModelInfo:
        m = self.settings.model
        return ModelInfo(name=m.name, version=m.version, dim=m.dim)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(status_code=status, content={"error": body})


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else "body"


def _validation_response(err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return _error(422, "invalid_json", f"request body is not valid JSON: {first.get('msg', '')}", "body")
    field_name = _field_of(loc)
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    elif first.get("type") == "missing":
        message = "field required"
    message = message.removeprefix("Value error, ")
    if field_name == "body" and "exactly one of" in message:
        field_name = "video_url" if "video_url" in message else "image_base64"
    return _error(422, "invalid_request", f"{field_name}: {message}", field_name)


def _decode_frames_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
        if not isinstance(after, int) or after < -1:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidRequest("next_token is not a token this API issued", field="next_token") from None


def _encode_frames_token(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1-255 printable ASCII characters", field="Idempotency-Key")
    return key


def _check_tags(tags: dict[str, str] | None, max_tags: int) -> dict[str, str]:
    tags = tags or {}
    if len(tags) > max_tags:
        raise InvalidRequest(f"at most {max_tags} tags", field="tags")
    for key, value in tags.items():
        if not 1 <= len(key) <= 64 or len(value) > 256:
            raise InvalidRequest("tag keys are 1-64 characters and values at most 256", field=f"tags.{key[:64]}")
    return tags


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """413 for bodies over the limit: by Content-Length before reading, or while reading a chunked body.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware adds a task and a stream copy to
    every request, a large share of a warm POST /analyze.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # Chunked: read it whole, bounded (API Gateway caps bodies at 10 MB in AWS anyway), then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = _error(413, "payload_too_large", f"request body is larger than {limit} bytes", "body")
        await response(scope, receive, send)


async def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


async def tenant(
    ctx: Ctx,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    key = x_api_key
    if key is None and authorization is not None:
        scheme, _, value = authorization.partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else None
    return ctx.auth.tenant_for(key)


Tenant = Annotated[str, Depends(tenant)]


def owned_job(job_id: str, tenant_id: Tenant, ctx: Ctx) -> Job:
    job = ctx.jobs.get(job_id) if len(job_id) <= 128 else None
    if job is None or job.tenant != tenant_id:
        raise JobNotFound(f"job {job_id[:128]} not found")
    return job


OwnedJob = Annotated[Job, Depends(owned_job)]


ERROR_STATUSES = (401, 404, 409, 413, 422, 503)
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}


# OpenAPI links from the job POST /analyze creates to the routes that take its id: clients (and schemathesis's
# stateful phase, which follows them with real ids instead of guessing 404s) learn where a job_id goes.
JOB_LINKS = {
    "GetJob": ("/jobs/{job_id}", "get"),
    "ListFrames": ("/jobs/{job_id}/frames", "get"),
    "ListShots": ("/jobs/{job_id}/shots", "get"),
    "ReplayCallback": ("/jobs/{job_id}/callback", "post"),
    "DeleteJob": ("/jobs/{job_id}", "delete"),
}


def _link_name(path: str, method: str) -> str:
    """A link name for a route not in JOB_LINKS: GET /jobs/{job_id}/labels -> GetJobLabels."""
    words = [w for w in path.split("/") if w and not w.startswith("{")]
    return method.capitalize() + "Job" + "".join(w.capitalize() for w in words[1:])


def _link_job_routes(paths: dict[str, Any]) -> None:
    """Every route whose one path parameter is job_id (the ones named in JOB_LINKS and any added since)."""
    accepted = paths.get("/analyze", {}).get("post", {}).get("responses", {}).get("202")
    if accepted is None:
        return
    named = {route: name for name, route in JOB_LINKS.items()}
    links = accepted.setdefault("links", {})
    for path, item in paths.items():
        if "{job_id}" not in path or path.count("{") != 1:
            continue
        for method in item:
            name = named.get((path, method)) or _link_name(path, method)
            pointer = path.replace("~", "~0").replace("/", "~1")
            links[name] = {"operationRef": f"#/paths/{pointer}/{method}",
                           "parameters": {"job_id": "$response.body#/job_id"}}


def _hide_private_job_fields(components: dict[str, Any]) -> None:
    """The Job schema as clients get it: the record's private fields (PRIVATE_JOB_FIELDS) never leave the service."""
    job = components.get("Job", {})
    for name in PRIVATE_JOB_FIELDS:
        job.get("properties", {}).pop(name, None)
    if "required" in job:
        job["required"] = [name for name in job["required"] if name not in PRIVATE_JOB_FIELDS]
    components.pop("CallbackMessage", None)  # only the record's callback_message refers to it


def _document_error_body(app: FastAPI) -> None:
    """Put ErrorResponse (and what it references) into the OpenAPI components, and the job links into POST /analyze's
    202, once, when the schema is built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI keeps it as app.openapi_schema: this part runs once
        error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(error.pop("$defs", {}))
        components["ErrorResponse"] = error
        _hide_private_job_fields(components)
        _link_job_routes(schema.get("paths", {}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


INDEX_ROUTES = frozenset({("POST", "/search"), ("GET", "/jobs/{job_id}/frames"), ("DELETE", "/jobs/{job_id}")})


def create_app(ctx: ApiContext, *, prometheus: bool = True, index_routes: bool = True) -> FastAPI:
    """The app. `prometheus=False` (Lambda: metrics go out as EMF, nothing scrapes a function) leaves out GET
    /metrics and the per-request instrumentation, and their imports. `index_routes=False` leaves out the routes that
    need the vector index (INDEX_ROUTES): in AWS the SearchFunction serves them (template.yaml), and the API
    function, which has neither the model nor a Qdrant client, builds three routes fewer at cold start."""
    skip_unused_pydantic_v1_check()
    app = FastAPI(
        title="video-ai",
        version="0.1.0",
        description="Per-frame video embeddings with exact timestamps; signed callbacks.",
        # Every error the app answers has this body; documented so clients (and schemathesis) can rely on it. By
        # reference, not as {"model": ErrorResponse}: that builds a pydantic TypeAdapter per route and status
        # (36 for the API function), ~20 ms of cold start for a body the app never validates on the way out.
        responses={status: {"content": _ERROR_CONTENT} for status in ERROR_STATUSES},
    )
    app.state.ctx = ctx
    _document_error_body(app)

    @app.exception_handler(VideoAIError)
    async def _domain_error(request: Request, err: VideoAIError) -> JSONResponse:
        if err.http_status >= 500:
            logger.warning("request failed: %s: %s", err.code, err.message)
        return _error(err.http_status, err.code, err.message, err.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return _validation_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400:
            # FastAPI's body parser raises a bare 400 for anything but a JSON syntax error, e.g. RecursionError on
            # 10,000 nested arrays: for the client that is invalid JSON like any other.
            return _error(422, "invalid_json", "request body is not JSON we can parse (nested too deeply?)", "body")
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error(err.status_code, codes.get(err.status_code, "http_error"), str(err.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return _error(500, "internal_error", "internal error")

    app.add_middleware(BodyLimit, limit=lambda: ctx.settings.api.max_body_bytes)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/analyze", status_code=202, response_model=Accepted)
    def analyze(
        body: AnalyzeRequest,
        tenant_id: Tenant,
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Accepted:
        if body.s3_uri is not None:
            from video_ai.adapters.s3_store import parse_s3_uri

            source = Source(s3=parse_s3_uri(body.s3_uri))
        else:
            source = Source(url=body.video_url)
        defaults = ctx.settings.sampling
        given = body.sampling.model_dump(exclude_none=True) if body.sampling else {}
        sampling = Sampling(**{"mode": defaults.mode, "fps": defaults.fps, "max_frames": defaults.max_frames,
                               **given})
        command = SubmitJob(
            source=source,
            tenant=tenant_id,
            callback_url=body.callback_url,
            sampling=sampling,
            tags=_check_tags(body.tags, ctx.settings.api.max_tags),
            idempotency_key=_check_idempotency_key(idempotency_key),
            features=list(body.features or ctx.settings.analysis.features),
            language=body.language,
        )
        submitted = submit_job(command, SubmitDeps(jobs=ctx.jobs, queue=ctx.queue, guard=ctx.guard,
                                                   metrics=ctx.metrics))
        response.headers["Location"] = f"/jobs/{submitted.job.job_id}"
        return Accepted(job_id=submitted.job.job_id, status=submitted.job.status.value)

    @app.get("/jobs", response_model=JobsPage)
    def list_jobs(
        tenant_id: Tenant,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        next_token: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> JobsPage:
        jobs, token = ctx.jobs.list_for_tenant(tenant_id, limit, next_token)
        return JobsPage(items=[j.public() for j in jobs], next_token=token)

    @app.get("/jobs/{job_id}", response_model=Job, response_model_exclude=set(PRIVATE_JOB_FIELDS))
    def get_job(job: OwnedJob) -> Job:
        return job

    @app.get("/jobs/{job_id}/shots", response_model=ShotsPage)
    def list_shots(job: OwnedJob) -> ShotsPage:
        return ShotsPage(items=job.shots)

    @app.post("/jobs/{job_id}/callback", status_code=202, response_model=Accepted)
    def replay_callback(job: OwnedJob) -> Accepted:
        if not job.status.terminal:
            raise Conflict(f"job {job.job_id} is {job.status.value}; callbacks are sent when it ends")
        if job.callback_url is None:
            raise Conflict(f"job {job.job_id} has no callback_url")
        if ctx.notifier_factory is None:
            raise Conflict("callback replay is not configured here")
        ctx.notifier_factory().job_finished(job, replay=True)
        return Accepted(job_id=job.job_id, status=job.status.value)

    from video_ai.api.page import router as page_router
    from video_ai.api.results import router as results_router
    from video_ai.api.uploads import router as uploads_router

    app.include_router(results_router)
    app.include_router(uploads_router)
    app.include_router(page_router)
    if index_routes:
        _index_routes(app, ctx)
    if prometheus:
        _mount_metrics(app)
    return app


def _index_routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.get("/jobs/{job_id}/frames", response_model=FramesPage)
    def list_frames(
        job: OwnedJob,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        next_token: Annotated[str | None, Query(max_length=256)] = None,
    ) -> FramesPage:
        after = _decode_frames_token(next_token) if next_token else None
        model = job.model or ctx.model()
        points = ctx.index().list_frames(model, job.job_id, job.tenant, after, limit + 1)
        more = len(points) > limit
        points = points[:limit]
        items = [
            Frame(index=int(p.payload["index"]), pts_s=float(p.payload["pts_s"]),
                  frame_number=int(p.payload["frame_number"]), shot=int(p.payload["shot"]), point_id=p.id)
            for p in points
        ]
        token = _encode_frames_token(items[-1].frame_number) if more and items else None
        return FramesPage(items=items, next_token=token)

    @app.delete("/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str, tenant_id: Tenant) -> Response:
        job = ctx.jobs.get(job_id) if len(job_id) <= 128 else None
        if job is not None and job.tenant == tenant_id:
            ctx.index().delete(job.model or ctx.model(), SearchFilter(tenant=tenant_id, job_id=job_id))
            moments = ctx.moments()
            if moments is not None:
                moments.delete(MomentFilter(tenant=tenant_id, job_id=job_id))
            thumbnails = ctx.thumbnails()
            if thumbnails is not None:
                thumbnails.delete(job_id)
            artifacts = ctx.artifacts()
            if artifacts is not None:
                artifacts.delete(job_id)
            ctx.owners.forget(job_id)
            ctx.jobs.delete(job_id)
            ctx.metrics.count("jobs_deleted")
        return Response(status_code=204)

    @app.post("/search", response_model=SearchResponse)
    def search(body: SearchRequest, tenant_id: Tenant) -> SearchResponse:
        from video_ai.services.search_frames import FrameRef, SearchDeps, SearchQuery, search_frames

        if body.text is not None:
            return SearchResponse(items=list(_search_text(ctx, body, tenant_id)))
        image = None
        if body.image_base64 is not None:
            from video_ai.images import decode_image

            image = decode_image(body.image_base64, field="image_base64")
        frame = FrameRef(job_id=body.frame.job_id, index=body.frame.index) if body.frame else None
        hits = search_frames(
            SearchQuery(tenant=tenant_id, image=image, frame=frame, top_k=body.top_k, job_id=body.job_id,
                        start_s=body.start_s, end_s=body.end_s, collapse=body.collapse),
            SearchDeps(index=ctx.index(), model=ctx.model(), embedder=ctx.embedder, jobs=ctx.jobs),
        )
        return SearchResponse(items=hits)


def _search_text(ctx: ApiContext, body: SearchRequest, tenant_id: str) -> list[MomentHit]:
    from video_ai.services.search_frames import SearchDeps
    from video_ai.services.search_moments import TextQuery, TextSearchDeps, search_words

    index = ctx.moments()
    if index is None or ctx.text_embedder_factory is None:
        raise InvalidRequest("text search is not configured here (no text index)", field="text")
    assert body.text is not None
    image = frames = None
    if body.image_base64 is not None:
        from video_ai.images import decode_image

        image = decode_image(body.image_base64, field="image_base64")
        frames = SearchDeps(index=ctx.index(), model=ctx.model(), embedder=ctx.embedder, jobs=ctx.jobs)
    query = TextQuery(tenant=tenant_id, text=body.text, top_k=body.top_k, job_id=body.job_id, start_s=body.start_s,
                      end_s=body.end_s, kinds=tuple(body.kinds or ()))
    return search_words(query, TextSearchDeps(index=index, embedder=ctx.text_embedder_factory, jobs=ctx.jobs), image,
                        frames)


def _mount_metrics(app: FastAPI) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(excluded_handlers=["/metrics", "/health"]).instrument(app)

    # Documented as text/plain (Prometheus' exposition format): the schema said application/json.
    @app.get("/metrics", include_in_schema=True, response_class=PlainTextResponse)
    def metrics(_: Tenant) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
