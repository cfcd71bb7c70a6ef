"""Record-level logic of the event-driven functions (worker, ingest, callback), shared by Lambda and `serve`.

Handlers stay a few lines: they hand each record to one of these functions; a raise fails that record alone
(powertools' BatchProcessor reports it in `batchItemFailures`, SQS redelivers it, and after the queue's
maxReceiveCount it lands in the DLQ).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from video_ai.domain.errors import InvalidRequest, JobBusy, VideoAIError
from video_ai.domain.models import Job, Sampling, Source
from video_ai.runtime import JobMessage, Runtime, parse_job_message

logger = logging.getLogger(__name__)

# Must match the jobs queue's RedrivePolicy.maxReceiveCount in template.yaml.
MAX_RECEIVES = 3


_busy = threading.local()


@contextmanager
def collecting_busy() -> Iterator[set[str]]:
    """The message ids of the records that failed with `job_busy` while this block ran, in this thread.

    For `serve`'s pollers, which hand a failed record back after 2 s (not the queue's 5,400 s visibility, too slow at
    a desk): a busy record must keep the queue's timeout instead, or it would come back while its job's owner still
    runs and use up its receives (then the DLQ fails the job). Lambda's event source mapping leaves a failed record
    invisible for the queue's timeout by itself: nothing collects there."""
    ids: set[str] = set()
    _busy.ids = ids
    try:
        yield ids
    finally:
        _busy.ids = None


class SqsRecordLike(Protocol):
    @property
    def body(self) -> str: ...

    @property
    def message_id(self) -> str: ...

    @property
    def attributes(self) -> Any: ...


class LoggerLike(Protocol):
    def append_keys(self, **keys: Any) -> None: ...

    def remove_keys(self, keys: list[str]) -> None: ...


def _receive_count(record: SqsRecordLike) -> int:
    attrs = record.attributes
    raw = getattr(attrs, "approximate_receive_count", None)
    if raw is None and isinstance(attrs, Mapping):
        raw = attrs.get("ApproximateReceiveCount")
    try:
        return int(raw) if raw is not None else 1
    except (TypeError, ValueError):
        return 1


def _sent_at_ms(record: SqsRecordLike) -> int | None:
    attrs = record.attributes
    raw = getattr(attrs, "sent_timestamp", None)
    if raw is None and isinstance(attrs, Mapping):
        raw = attrs.get("SentTimestamp")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


@contextmanager
def job_record_context(
    record: SqsRecordLike, runtime: Runtime, log: LoggerLike | None = None
) -> Iterator[tuple[JobMessage, bool]]:
    """Parse a jobs-queue record, tag the logs with the job, and say whether this is the last delivery."""
    message = parse_job_message(record.body)
    receives = _receive_count(record)
    sent = _sent_at_ms(record)
    if sent is not None and receives == 1:
        runtime.metrics.observe("queue_wait_seconds", max(0.0, time.time() - sent / 1000.0))
    keys = {"job_id": message.job_id, "tenant": message.tenant or "", "receive_count": receives,
            "request_id": record.message_id}
    if log is not None:
        log.append_keys(**keys)
    try:
        yield message, receives >= MAX_RECEIVES
    except VideoAIError as err:
        # Transient (permanent ones end the job without raising): SQS redelivers, up to the DLQ.
        busy = getattr(_busy, "ids", None)
        if isinstance(err, JobBusy) and busy is not None:
            busy.add(record.message_id)
        logger.warning("job attempt %d failed: %s: %s", receives, err.code, err.message)
        raise
    except Exception:
        # powertools' batch processor records the failure without logging it: the cause and its traceback go here.
        logger.exception("job attempt %d failed unexpectedly", receives)
        raise
    finally:
        if log is not None:
            log.remove_keys(list(keys))


# Why a dead-lettered job failed: its last attempt ended without a word (a failing attempt records its own end).
DEAD_LETTER_REASON = ("the worker stopped during the job's last attempt (timeout, out of memory or crash); its "
                      "message went to the jobs dead-letter queue")


def dead_letter_record(body: str, runtime: Runtime) -> Job | None:
    """A jobs-DLQ record -> its job ends `failed` (retries_exhausted) and is announced, unless it had ended already.

    A message reaches the DLQ on the receive after its last attempt. An attempt that fails records the job's end
    itself (analyze_video's `final_attempt`), but one that dies (Lambda's timeout, out of memory, a crash) cannot, and
    the job would stay `processing` for good. The jobs queue's visibility timeout (6x the worker's 900 s) means the
    last attempt's invocation has ended by then. The message is consumed either way; the error line and the
    `jobs_dead_lettered` metric (alarmed) keep it in front of an operator. A segment's message fails the whole job:
    its segment would never be recorded. Not a job message: logged (with the body) and dropped, not retried for the
    DLQ's 14 days.
    """
    from video_ai.services.announce import give_up

    runtime.metrics.count("jobs_dead_lettered")
    try:
        message = parse_job_message(body)
    except InvalidRequest as err:
        logger.error("jobs dead-letter queue: not a job message (%s); dropped", err.message,
                     extra={"dead_letter": "invalid", "body": body[:2000]})
        return None
    job = give_up(message.job_id, DEAD_LETTER_REASON, runtime.jobs(), runtime.notifier(), runtime.metrics)
    outcome = "missing" if job is None else job.status.value
    error = job.error.code if job is not None and job.error is not None else None
    logger.error("job message dead-lettered after its last attempt; job %s%s", outcome,
                 f" ({error})" if error else "",
                 extra={"dead_letter": outcome, "job_id": message.job_id, "tenant": message.tenant or "",
                        "segment": message.segment, "error_code": error})
    return job


def requeue_scheduled(runtime: Runtime) -> int:
    """A scheduled run (JobsRequeueFunction; `serve`'s requeue thread): send the jobs whose submitter died between
    recording them and sending their message (services/requeue.py); the number sent."""
    from video_ai.services.requeue import requeue_unsent

    sent = requeue_unsent(runtime.jobs(), runtime.queue(), metrics=runtime.metrics)
    if sent:
        logger.warning("%d job(s) left queued and never sent: sent now", len(sent))
    return len(sent)


def tenant_for_upload_key(key: str, default: str = "default") -> str:
    """Uploads under `tenants/<tenant>/...` belong to that tenant; everything else to the default tenant."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "tenants" and parts[1]:
        return parts[1]
    return default


def ingest_record(body: str, runtime: Runtime) -> list[Job]:
    """An uploads-queue record (an S3 notification) -> one queued job per created object, idempotently."""
    from video_ai.adapters.s3_store import s3_uploads_from_notification
    from video_ai.services.submit_job import SubmitJob, submit_job

    try:
        uploads = s3_uploads_from_notification(body)
    except json.JSONDecodeError:
        raise InvalidRequest("uploads-queue message is not JSON", field="body") from None
    jobs: list[Job] = []
    deps = runtime.submit_deps()
    defaults = runtime.settings.sampling
    for location, etag in uploads:
        # The same object (version, and content: its ETag) always maps to the same job: S3 and SQS may both deliver
        # twice. Without versioning an overwrite keeps the key and no version, so the ETag is what tells a new upload
        # of other bytes (a new job) from the same bytes again (the existing job).
        identity = f"s3://{location.bucket}/{location.key}#{location.version or ''}#{etag or ''}"
        key = "s3-" + hashlib.sha256(identity.encode()).hexdigest()[:40]
        submitted = submit_job(
            SubmitJob(
                source=Source(s3=location),
                tenant=tenant_for_upload_key(location.key),
                sampling=Sampling(mode=defaults.mode, fps=defaults.fps, max_frames=defaults.max_frames),
                tags={"trigger": "s3-upload"},
                idempotency_key=key,
                features=list(runtime.settings.analysis.features),
            ),
            deps,
        )
        if submitted.created:
            logger.info("upload queued as job %s", submitted.job.job_id,
                        extra={"job_id": submitted.job.job_id, "key": location.key})
        else:
            # Same object and version as before (a re-upload of identical bytes keeps moto's/S3's version when
            # versioning is off): the existing job stands, nothing new is queued.
            logger.info("upload already known as job %s (%s); no new job", submitted.job.job_id,
                        submitted.job.status.value, extra={"job_id": submitted.job.job_id, "key": location.key})
        jobs.append(submitted.job)
    return jobs


def callback_message(message: str, runtime: Runtime, deadline_s: float | None) -> None:
    """An SNS "job finished" message -> a signed delivery to the job's callback_url (if any)."""
    from video_ai.services.deliver_callback import deliver_callback

    try:
        envelope = json.loads(message)
        event_type = str(envelope["type"])
        job_data = envelope["data"]
        replay = bool(envelope.get("replay", False))
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest("not a job-finished message", field="Message") from None
    if event_type not in ("job.succeeded", "job.failed"):
        raise InvalidRequest(f"unknown event type {event_type!r}", field="type")
    stored = runtime.jobs().get(str(envelope.get("job_id", "")))
    if stored is None:
        logger.info("callback for a deleted job skipped")
        return
    job = stored if not isinstance(job_data, dict) else _job_from_event(job_data, stored)
    try:
        state = deliver_callback(job, event_type, jobs=runtime.jobs(), sender=runtime.webhook_sender(),
                                 settings=runtime.settings.webhook, deadline_s=deadline_s, replay=replay)
    except VideoAIError as err:
        runtime.metrics.count("callback_deliveries", outcome="retry" if not err.permanent else "refused")
        raise
    if state is not None:
        runtime.metrics.count("callback_deliveries", outcome=state.status)


def _job_from_event(data: dict[str, Any], stored: Job) -> Job:
    """The job as published (what the event describes), falling back to the stored record if it does not parse."""
    try:
        return Job.model_validate({**data, "shots": [], "request_hash": stored.request_hash,
                                   "content_key": stored.content_key})
    except ValueError:
        return stored
