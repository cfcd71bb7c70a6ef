"""The composition root shared by the Lambda functions and `video-ai serve`: adapters wired into services.

Every part is built on first use and then kept for the life of the container, so a function only pays for what its
own path needs (the API's `POST /analyze` never builds the index or the embedder).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from video_ai.domain.errors import ConfigError, InvalidRequest
from video_ai.domain.ports import (
    ArtifactStore,
    Embedder,
    Metrics,
    MomentIndex,
    NullMetrics,
    NullTracing,
    TextEmbedder,
    ThumbnailStore,
    Tracing,
    VectorIndex,
    VideoLinks,
)
from video_ai.settings import Settings

if TYPE_CHECKING:
    from video_ai.adapters.aws import AwsClients
    from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
    from video_ai.adapters.net_guard import NetGuard, Resolver
    from video_ai.adapters.sns_notifier import SnsNotifier
    from video_ai.adapters.sqs_queue import SqsJobQueue
    from video_ai.adapters.webhook_sender import WebhookSender
    from video_ai.analyzers import MomentStore
    from video_ai.api.app import ApiContext
    from video_ai.services.analyze_video import AnalyzeDeps
    from video_ai.services.submit_job import SubmitDeps

logger = logging.getLogger(__name__)
T = TypeVar("T")


class JobMessage(BaseModel):
    """The body of a jobs-queue message."""

    model_config = ConfigDict(extra="ignore")
    job_id: str = Field(min_length=1, max_length=128)
    tenant: str | None = None
    segment: int | None = Field(default=None, ge=0)


def parse_job_message(body: str) -> JobMessage:
    try:
        return JobMessage.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"not a job message: {where}: {first['msg']}", field=where) from None


def _split_secrets(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        values = json.loads(raw)
        return [str(v) for v in values]
    return [part for part in raw.replace(",", " ").split() if part]


def _get_secret(arn: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(arn, max_age=300)
    return value if isinstance(value, str) else value.decode()


@dataclass(slots=True)
class Secrets:
    webhook: list[str] = field(default_factory=list)
    api_key_hashes: dict[str, str] = field(default_factory=dict)
    qdrant_api_key: str | None = None


def load_secrets(environ: Mapping[str, str] | None = None, fetch: Callable[[str], str] = _get_secret) -> Secrets:
    """Secrets from the environment (local) or AWS Secrets Manager by ARN (deployed); never from YAML."""
    env = os.environ if environ is None else environ
    secrets = Secrets()
    if env.get("WEBHOOK_SECRET_ARN"):
        secrets.webhook = _split_secrets(fetch(env["WEBHOOK_SECRET_ARN"]))
    elif env.get("VIDEO_AI_WEBHOOK_SECRETS"):
        secrets.webhook = _split_secrets(env["VIDEO_AI_WEBHOOK_SECRETS"])
    if env.get("API_KEYS_SECRET_ARN"):
        data = json.loads(fetch(env["API_KEYS_SECRET_ARN"]))
        if not isinstance(data, dict):
            raise ConfigError("API_KEYS_SECRET_ARN: the secret must be a JSON object {sha256(key): tenant}")
        secrets.api_key_hashes = {str(k): str(v) for k, v in data.items()}
    if env.get("QDRANT_API_KEY_SECRET_ARN"):
        secrets.qdrant_api_key = fetch(env["QDRANT_API_KEY_SECRET_ARN"]).strip()
    return secrets


class Runtime:
    """Builds and caches adapters for one process. `settings` may be swapped by a config reload."""

    def __init__(
        self,
        settings: Settings,
        *,
        secrets: Secrets | None = None,
        clients: AwsClients | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        resolver: Resolver | None = None,
        exempt_endpoints: Collection[tuple[str, int]] = (),
        allow_local_files: bool = False,
    ) -> None:
        self.secrets = secrets or Secrets()
        if self.secrets.qdrant_api_key and settings.qdrant.api_key is None:
            qdrant = settings.qdrant.model_copy(update={"api_key": SecretStr(self.secrets.qdrant_api_key)})
            settings = settings.model_copy(update={"qdrant": qdrant})
        self.settings = settings
        self.metrics: Metrics = metrics or NullMetrics()
        self.tracing: Tracing = tracing or NullTracing()
        self.resolver = resolver
        self.exempt_endpoints = tuple(exempt_endpoints)
        self.allow_local_files = allow_local_files
        self._clients = clients
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = build()
            value: T = self._cache[name]
            return value

    # ------------------------------------------------------------ adapters

    @property
    def clients(self) -> AwsClients:
        def build() -> AwsClients:
            from video_ai.adapters.aws import AwsClients

            return AwsClients.from_settings(self.settings.aws)

        if self._clients is None:
            self._clients = self._once("clients", build)
        return self._clients

    def _required(self, value: str | None, name: str) -> str:
        if not value:
            raise ConfigError(f"aws.{name} is not set (VIDEO_AI__AWS__{name.upper()})", field=f"aws.{name}")
        return value

    def jobs(self) -> DynamoDBJobRepository:
        from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository

        return self._once("jobs", lambda: DynamoDBJobRepository(self.settings.aws.jobs_table, self.clients))

    def queue(self) -> SqsJobQueue:
        from video_ai.adapters.sqs_queue import SqsJobQueue

        url = self._required(self.settings.aws.jobs_queue_url, "jobs_queue_url")
        return self._once("queue", lambda: SqsJobQueue(url, self.clients))

    def notifier(self) -> SnsNotifier:
        from video_ai.adapters.sns_notifier import SnsNotifier

        arn = self._required(self.settings.aws.topic_arn, "topic_arn")
        return self._once("notifier", lambda: SnsNotifier(arn, self.clients))

    def index(self) -> VectorIndex:
        from video_ai.composition import build_index

        return self._once("index", lambda: build_index(self.settings))

    def embedder(self) -> Embedder:
        from video_ai.composition import build_embedder

        return self._once("embedder", lambda: build_embedder(self.settings))

    def moment_index(self) -> MomentIndex:
        from video_ai.composition import build_moment_index

        return self._once("moments", lambda: build_moment_index(self.settings))

    def text_embedder(self) -> TextEmbedder:
        from video_ai.composition import build_text_embedder

        return self._once("text_embedder", lambda: build_text_embedder(self.settings))

    def links(self) -> VideoLinks:
        from video_ai.adapters.s3_store import S3Presigner

        return self._once("links", lambda: S3Presigner(self.clients))

    def thumbnails(self) -> ThumbnailStore | None:
        from video_ai.composition import build_thumbnails

        return self._once("thumbnails", lambda: build_thumbnails(self.settings, self.clients))

    def artifacts(self) -> ArtifactStore | None:
        from video_ai.composition import build_artifacts

        return self._once("artifacts", lambda: build_artifacts(self.settings, self.clients))

    def moment_store(self) -> MomentStore:
        from video_ai.analyzers import MomentStore

        return MomentStore(self.moment_index(), self.text_embedder())

    def guard(self) -> NetGuard:
        from video_ai.adapters.net_guard import NetGuard

        return NetGuard(self.settings.network, self.settings.limits, self.resolver,
                        exempt_endpoints=self.exempt_endpoints)

    def webhook_sender(self) -> WebhookSender:
        from video_ai.adapters.webhook_sender import WebhookSender

        if not self.secrets.webhook:
            raise ConfigError("no webhook secret: set WEBHOOK_SECRET_ARN (AWS) or VIDEO_AI_WEBHOOK_SECRETS (local)")
        return WebhookSender(self.secrets.webhook, self.settings.webhook, self.settings.network, self.settings.limits,
                             self.resolver, exempt_endpoints=self.exempt_endpoints)

    # ------------------------------------------------------------ service dependencies

    def submit_deps(self) -> SubmitDeps:
        from video_ai.services.submit_job import SubmitDeps

        return SubmitDeps(jobs=self.jobs(), queue=self.queue(), guard=self.guard(), metrics=self.metrics)

    def analyze_deps(self) -> AnalyzeDeps:
        from video_ai.adapters.http_fetch import HttpVideoFetcher
        from video_ai.adapters.s3_store import S3SourceStager, S3VideoFetcher
        from video_ai.composition import (
            build_analyzers,
            build_audio_source,
            build_frame_source,
            build_ranged_opener,
            clean_workdir,
            workdir,
        )
        from video_ai.services.analyze_video import AnalyzeDeps

        settings = self.settings
        self._once("workdir", lambda: clean_workdir(workdir(settings)))
        fetcher = HttpVideoFetcher(
            settings.network, settings.limits, self.resolver,
            s3_fetcher=S3VideoFetcher(self.clients, settings.limits.max_source_bytes),
            allow_local_files=self.allow_local_files, exempt_endpoints=self.exempt_endpoints,
        )
        return AnalyzeDeps(
            jobs=self.jobs(), fetcher=fetcher, frames=build_frame_source(settings), embedder=self.embedder(),
            index=self.index(), notifier=self.notifier(), workdir=workdir(settings), metrics=self.metrics,
            tracing=self.tracing,
            batch_size=settings.model.batch_size, pipeline_queue=settings.scale.pipeline_queue,
            segment_queue=self.queue(), segment_s=settings.scale.segment_s,
            stager=S3SourceStager(self.clients, settings.aws.uploads_bucket) if settings.aws.uploads_bucket else None,
            ranged=build_ranged_opener(self.clients),
            analyzers=build_analyzers(settings, self.embedder(), self.index(), self.tracing, self.moment_store(),
                                      self.thumbnails(), self.artifacts()),
            audio=build_audio_source(),
        )

    def api_context(self) -> ApiContext:
        from video_ai.api.app import ApiContext
        from video_ai.api.auth import ApiKeyAuth

        hashes = {**self.settings.api.api_key_hashes, **self.secrets.api_key_hashes}
        return ApiContext(
            settings=self.settings, jobs=self.jobs(), queue=self.queue(), auth=ApiKeyAuth(hashes),
            index_factory=self.index, embedder_factory=self.embedder, notifier_factory=self.notifier,
            guard=self.guard(), metrics=self.metrics, moments_factory=self.moment_index,
            text_embedder_factory=self.text_embedder, thumbnails_factory=self.thumbnails, links_factory=self.links,
            artifacts_factory=self.artifacts,
        )

    def close(self) -> None:
        with self._lock:
            index = self._cache.pop("index", None)
            moments = self._cache.pop("moments", None)
        if index is not None:
            index.close()
        if moments is not None:
            moments.close()


_process_runtime: Runtime | None = None
_process_lock = threading.Lock()


def shared_runtime(build: Callable[[], Runtime]) -> Runtime:
    """One Runtime per process: Lambda builds its own; `serve` installs one that every handler shares (one embedded
    Qdrant, one model session)."""
    global _process_runtime
    with _process_lock:
        if _process_runtime is None:
            _process_runtime = build()
        return _process_runtime


def install_runtime(runtime: Runtime | None) -> None:
    global _process_runtime
    with _process_lock:
        _process_runtime = runtime
