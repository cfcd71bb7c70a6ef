"""Deliver a job's signed callback: retries within the function's time budget, state recorded on the job.

Retried: no response (connection error, timeout), 5xx, 408, 429 — with exponential backoff and "equal jitter"
(half the step fixed, half random), which spreads receivers' load like full jitter while keeping each wait at
least as long as the one before; `Retry-After` wins when given (capped at `backoff_max_s`). When attempts or time
run out, `CallbackFailed` (transient) is raised so Lambda's retries and the on-failure destination take over.
Other non-2xx answers are permanent (`failed`, nothing raised); 410 Gone marks the job's callback `gone` and no
later delivery, not even a replay, goes to that URL.

One job ending is one message, as Standard Webhooks (and Svix, its origin) define it: the first delivery keeps the
body it built with the job (`Job.callback_message`), and every later attempt, Lambda retry and replay sends those
bytes under the same webhook-id, with only webhook-timestamp and the signature new. A replay must not rebuild the body
from the record, which has moved on since (callback state, updated_at): a receiver deduping on webhook-id would keep
whichever body came first, and one that compares would see two. A job id that ends again (deleted, then created
anew by the same Idempotency-Key) is a new message with a new id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from video_ai.domain.errors import TransientError, VideoAIError
from video_ai.domain.models import CallbackMessage, CallbackState, Job, utc_now
from video_ai.domain.ports import JobRepository
from video_ai.settings import WebhookSettings

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 20_000
# Kept when the full record would make the payload too large; the receiver reads the rest with GET /jobs/{id}.
SUMMARY_FIELDS = (
    "job_id", "status", "created_at", "updated_at", "tenant", "sha256", "frames_indexed", "shots_detected",
    "video", "model", "timings", "error",
)
RETRYABLE_STATUSES = frozenset({408, 429})
DEFAULT_MARGIN_S = 3.0


class CallbackFailed(TransientError):
    """Every attempt within this invocation failed in a way a later retry may fix."""

    code = "callback_failed"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One HTTP attempt: the status, or an error when no response came back; Retry-After in seconds if sent."""

    status_code: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code >= 500 or code in RETRYABLE_STATUSES


class CallbackSender(Protocol):
    def send(self, url: str, body: bytes, msg_id: str) -> DeliveryResult:
        """One POST of `body`, signed; raises ForbiddenAddress / InvalidRequest when the URL is refused."""
        ...


def webhook_id(job_id: str, event_type: str, created_at: str) -> str:
    """One per job ending, so receivers can dedupe retries and replays; `created_at` tells a job id created anew
    (DELETE, then the same Idempotency-Key) from the one that ended before."""
    return "msg_" + hashlib.sha256(f"{job_id}.{event_type}.{created_at}".encode()).hexdigest()[:32]


def event_type_for(job: Job) -> str:
    return f"job.{job.status.value}"


def budget_from_remaining_ms(remaining_ms: int, margin_s: float = DEFAULT_MARGIN_S) -> float:
    """Delivery budget from Lambda's `context.get_remaining_time_in_millis()`, keeping `margin_s` to record state."""
    return max(0.0, remaining_ms / 1000.0 - margin_s)


def build_payload(job: Job, event_type: str) -> dict[str, Any]:
    """`{type, job_id, timestamp, data}`; `data` shrinks to a summary (then a clipped error) if over 20 KB."""
    data = job.public()
    payload: dict[str, Any] = {"type": event_type, "job_id": job.job_id, "timestamp": job.updated_at, "data": data}
    if _size(payload) <= MAX_PAYLOAD_BYTES:
        return payload
    summary: dict[str, Any] = {key: data.get(key) for key in SUMMARY_FIELDS}
    summary["truncated"] = True
    payload["data"] = summary
    if _size(payload) > MAX_PAYLOAD_BYTES and summary.get("error"):
        summary["error"] = {**summary["error"], "message": str(summary["error"].get("message", ""))[:1000]}
    if _size(payload) > MAX_PAYLOAD_BYTES:
        payload["data"] = {"job_id": job.job_id, "status": job.status.value, "truncated": True}
    return payload


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the bytes sent and signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _size(payload: dict[str, Any]) -> int:
    return len(encode_payload(payload))


def _message(jobs: JobRepository, current: Job, job: Job, event_type: str) -> CallbackMessage:
    """The job's callback message: the one kept by its first delivery, else one built now from `job` and kept (when
    two deliveries race to build it, both send the one kept first)."""
    if current.callback_message is not None:
        return current.callback_message
    message = CallbackMessage(webhook_id=webhook_id(job.job_id, event_type, job.created_at),
                              body=encode_payload(build_payload(job, event_type)).decode("utf-8"))
    return jobs.keep_callback_message(job.job_id, message)


def _backoff(attempt: int, settings: WebhookSettings, rng: Callable[[], float]) -> float:
    step = min(settings.backoff_max_s, settings.backoff_base_s * 2.0**attempt)
    return step / 2 + float(rng()) * step / 2


def deliver_callback(
    job: Job,
    event_type: str,
    *,
    jobs: JobRepository,
    sender: CallbackSender,
    settings: WebhookSettings,
    sleep: Callable[[float], None] = time.sleep,
    deadline_s: float | None = None,
    rng: Callable[[], float] = random.random,
    monotonic: Callable[[], float] = time.monotonic,
    replay: bool = False,
) -> CallbackState | None:
    """Deliver `event_type` for `job` to its callback_url; return the recorded state (None: no callback_url).

    `deadline_s` is the time budget in seconds from now (see `budget_from_remaining_ms`); None: attempts only.
    Already delivered: no-op unless `replay` (the same message again). Gone: always a no-op. Raises CallbackFailed
    when retryable failures exhaust attempts or time.
    """
    current = jobs.get(job.job_id) or job
    url = current.callback_url or job.callback_url
    if not url:
        return None
    state = (current.callback or CallbackState()).model_copy()
    if state.status == "gone" or (state.status == "delivered" and not replay):
        return state
    # A first delivery's data is the job as the caller saw it (the finished job from SNS); the stored record
    # supplies the callback state, whose own updates bump updated_at, and the message once one was sent.
    message = _message(jobs, current, job, event_type)
    body = message.body.encode("utf-8")
    started = monotonic()
    for attempt in range(settings.max_attempts):
        try:
            result = sender.send(url, body, message.webhook_id)
        except VideoAIError as err:
            if not err.permanent:
                result = DeliveryResult(status_code=None, error=f"{err.code}: {err.message}")
            else:
                state = _record(jobs, job, state, status="failed", last_status=None, last_error=err.code)
                logger.warning("callback refused for job %s: %s", job.job_id, err.message)
                return state
        state = _record_attempt(jobs, job, state, result)
        if state.status in ("delivered", "gone", "failed"):
            return state
        if attempt + 1 >= settings.max_attempts:
            break
        delay = _backoff(attempt, settings, rng)
        if result.retry_after_s is not None:
            delay = min(max(result.retry_after_s, 0.0), settings.backoff_max_s)
        if deadline_s is not None and monotonic() - started + delay + settings.timeout_s > deadline_s:
            break  # another attempt would not finish in time; a Lambda retry will
        sleep(delay)
    # "failed" until a later invocation (Lambda retry, replay) succeeds; neither skips a failed callback.
    state = _record(jobs, job, state, status="failed", last_status=state.last_status, last_error=state.last_error)
    raise CallbackFailed(
        f"callback for job {job.job_id} not delivered after {state.attempts} attempts: {state.last_error}",
        field="callback_url",
    )


def _record_attempt(jobs: JobRepository, job: Job, state: CallbackState, result: DeliveryResult) -> CallbackState:
    error = result.error if result.status_code is None else (None if result.ok else f"http {result.status_code}")
    if result.ok:
        status = "delivered"
    elif result.status_code == 410:
        status = "gone"
    elif result.retryable:
        status = "pending"
    else:
        status = "failed"
    return _record(jobs, job, state, status=status, last_status=result.status_code, last_error=error, attempt=True)


def _record(
    jobs: JobRepository,
    job: Job,
    state: CallbackState,
    *,
    status: str,
    last_status: int | None,
    last_error: str | None,
    attempt: bool = False,
) -> CallbackState:
    new = CallbackState.model_validate(
        {
            "status": status,
            "attempts": state.attempts + (1 if attempt else 0),
            "last_status": last_status,
            "last_error": last_error,
            "delivered_at": utc_now() if status == "delivered" else state.delivered_at,
        }
    )
    jobs.update(job.job_id, callback=new)
    return new
