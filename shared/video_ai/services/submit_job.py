"""submit_job: validate a request, create the job record (idempotently) and queue it. Used by the API and ingest."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from video_ai.domain.errors import TransientError, VideoAIError
from video_ai.domain.models import DEFAULT_FEATURES, ErrorInfo, Feature, Job, JobStatus, Sampling, Source
from video_ai.domain.ports import JobQueue, JobRepository, Metrics, NullMetrics

logger = logging.getLogger(__name__)

IDEMPOTENCY_NAMESPACE = uuid.UUID("0b5a8f7e-3c1d-4e9a-8f26-7d9c4b1e5a33")


class UrlGuard(Protocol):
    def check(self, url: str, field: str) -> None:
        """Raise ForbiddenAddress / InvalidRequest when the URL may not be fetched or called."""
        ...


class AllowAll:
    def check(self, url: str, field: str) -> None:
        return None


@dataclass(slots=True)
class SubmitJob:
    source: Source
    tenant: str = "default"
    callback_url: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    features: list[Feature] = field(default_factory=lambda: list(DEFAULT_FEATURES))
    language: str | None = None

    def request_hash(self) -> str:
        body: dict[str, object] = {
            "source": self.source.model_dump(mode="json"),
            "callback_url": self.callback_url,
            "sampling": self.sampling.model_dump(mode="json"),
            "tags": self.tags,
        }
        if list(self.features) != list(DEFAULT_FEATURES):
            body["features"] = sorted(set(self.features))
        if self.language is not None:
            body["language"] = self.language
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(slots=True)
class SubmitDeps:
    jobs: JobRepository
    queue: JobQueue
    guard: UrlGuard = field(default_factory=AllowAll)
    metrics: Metrics = field(default_factory=NullMetrics)


@dataclass(slots=True, frozen=True)
class Submitted:
    job: Job
    created: bool


def submit_job(command: SubmitJob, deps: SubmitDeps) -> Submitted:
    """Create and queue a job. The same Idempotency-Key with the same body returns the same job."""
    if command.source.url is not None:
        deps.guard.check(command.source.url, "video_url")
    if command.callback_url is not None:
        deps.guard.check(command.callback_url, "callback_url")
    request_hash = command.request_hash()
    if command.idempotency_key is not None:
        job_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{command.tenant}\x00{command.idempotency_key}"))
    else:
        job_id = str(uuid.uuid4())
    job = Job(
        job_id=job_id,
        tenant=command.tenant,
        tags=command.tags,
        source=command.source,
        callback_url=command.callback_url,
        sampling=command.sampling,
        features=list(command.features),
        language=command.language,
        request_hash=request_hash,
    )
    if command.idempotency_key is not None:
        job, created = deps.jobs.create_idempotent(job, command.idempotency_key, request_hash)
        if not created and (job.status is not JobStatus.QUEUED or job.enqueued_at is not None):
            return Submitted(job=job, created=False)
    else:
        job, created = deps.jobs.create(job), True
    try:
        # A retried request whose job is queued but was never recorded as sent sends it: the first request's send
        # may have failed, or its process died between the record and the send.
        deps.queue.send({"job_id": job.job_id, "tenant": job.tenant})
    except VideoAIError as err:
        if command.idempotency_key is None:
            deps.jobs.transition(job.job_id, JobStatus.FAILED, error=ErrorInfo(code="queue_unavailable",
                                                                               message=err.message))
        raise TransientError("the job queue is unavailable; retry the request") from err
    mark_enqueued(job.job_id, deps.jobs)
    if created:
        deps.metrics.count("jobs_accepted")
        logger.info("job queued", extra={"job_id": job.job_id, "tenant": job.tenant})
    return Submitted(job=job, created=created)


def mark_enqueued(job_id: str, jobs: JobRepository) -> None:
    """Record the send (services/requeue.py sends the jobs left without it). A failure here is only logged: the
    message is on its way, and the worst a missing mark causes is one more send, which the job's lease absorbs."""
    try:
        jobs.mark_enqueued(job_id)
    except Exception as err:
        logger.warning("job queued, but its send could not be recorded (%s: %s); it may be sent again",
                       type(err).__name__, err, extra={"job_id": job_id})
