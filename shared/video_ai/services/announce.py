"""Publish a finished job's "job finished" notification at least once, with the record as its outbox.

The worker records a job's end (a conditional write) and then publishes to SNS: two systems, no transaction between
them. A crash between the two used to lose the notification for good, because the message's redelivery found the job
finished and did nothing. So the record carries an outbox mark, `announced_at`, written only after the publish
succeeded, and whoever finds a finished job without it (the redelivered message, `serve`'s start) publishes it.

That makes the publish at-least-once, never lost; a duplicate is harmless because the callback is exactly-once per
`webhook-id` (job id + event type) and its body is the same: nothing but the callback function and this mark writes
to a finished record, so an unmarked record with no callback state is still the record as it was first published.
A finished job that has callback state was published already (only a published notification starts a delivery):
it is not published again, or a receiver could see a second body (the callback state is in `data`) under one id.
"""

from __future__ import annotations

import logging

from video_ai.domain.errors import InvalidTransition, JobNotFound, RetriesExhausted
from video_ai.domain.models import ErrorInfo, Job, JobStatus, utc_now
from video_ai.domain.ports import JobRepository, Metrics, Notifier

logger = logging.getLogger(__name__)


def announce(job: Job, jobs: JobRepository, notifier: Notifier) -> None:
    """Publish the end of `job` (just recorded), then mark it announced."""
    notifier.job_finished(job)
    jobs.update(job.job_id, announced_at=utc_now())


def needs_announcing(job: Job) -> bool:
    """A finished job whose notification may never have been published."""
    return job.status.terminal and job.announced_at is None and job.callback is None


def announce_if_unannounced(job: Job, jobs: JobRepository, notifier: Notifier) -> bool:
    """Publish a finished job's end unless it is known to have been published; True if it was published now."""
    if not needs_announcing(job):
        return False
    logger.info("job %s but never announced: publishing its end now", job.status.value, extra={"job_id": job.job_id})
    announce(job, jobs, notifier)
    return True


def give_up(job_id: str, reason: str, jobs: JobRepository, notifier: Notifier,
            metrics: Metrics | None = None) -> Job | None:
    """End a job `failed` (retries_exhausted) from outside the worker, whose message was given up on, and announce
    it; counted in `jobs_failed` like the worker's own failures. A job already finished keeps its end (announced if it
    never was); None if the job does not exist."""
    try:
        failed = jobs.transition(job_id, JobStatus.FAILED, error=ErrorInfo(code=RetriesExhausted.code, message=reason))
    except (InvalidTransition, JobNotFound):
        current = jobs.get(job_id)
        if current is not None:
            announce_if_unannounced(current, jobs, notifier)
        return current
    logger.warning("job failed: %s: %s", RetriesExhausted.code, reason, extra={"job_id": job_id})
    if metrics is not None:
        metrics.count("jobs_failed", error_code=RetriesExhausted.code)
    announce(failed, jobs, notifier)
    return failed
