"""Send the jobs nobody sent: a job left `queued` without `enqueued_at` for longer than a bound.

submit_job writes the job record, then sends its message, then marks the record (`enqueued_at`). A submitter that
dies between the record and the send (the API function timed out or crashed, the ingest function likewise; a request
without an Idempotency-Key is never retried by the client under the same job) left a job that nothing would ever
run: it stayed `queued` for good. `requeue_unsent` finds such jobs (DynamoDB: a Query of the sparse `by_unsent`
index, not a Scan) and sends their message, then marks them. The bound must outlast a live submitter's window
between the record and the send (the API's 29 s and the ingest function's 30 s timeouts): a job still inside it may
be sent twice, which is harmless (the second delivery finds the job taken or finished: analyze_video's lease). It
runs on a schedule on AWS (JobsRequeueFunction, every 5 minutes) and in `serve` at start and then periodically.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from video_ai.domain.models import Job
from video_ai.domain.ports import JobQueue, JobRepository, Metrics, NullMetrics
from video_ai.services.submit_job import mark_enqueued

logger = logging.getLogger(__name__)

# Older than this (seconds since the record was created) and still unsent: its submitter is gone.
REQUEUE_AFTER_S = 120.0
BATCH = 100


def requeue_unsent(jobs: JobRepository, queue: JobQueue, *, older_than_s: float = REQUEUE_AFTER_S,
                   metrics: Metrics | None = None, skip: set[str] | None = None, now: datetime | None = None,
                   limit: int = 1000) -> list[Job]:
    """Send the message of every job queued without a send mark for longer than `older_than_s`; the jobs sent.

    `skip`: job ids whose message is known to be queued already (`serve` reads its durable queue): only marked."""
    cutoff = ((now or datetime.now(UTC)) - timedelta(seconds=older_than_s))
    created_before = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sent: list[Job] = []
    seen = 0
    while seen < limit:
        batch = jobs.unsent(created_before, min(BATCH, limit - seen))
        if not batch:
            break
        seen += len(batch)
        for job in batch:
            if skip is None or job.job_id not in skip:
                # A send that fails raises (a TransientError): the next run finds the job again.
                queue.send({"job_id": job.job_id, "tenant": job.tenant})
                sent.append(job)
                logger.warning("job was left queued and never sent (its submitter died before the send): sent now",
                               extra={"job_id": job.job_id, "tenant": job.tenant, "created_at": job.created_at})
                (metrics or NullMetrics()).count("jobs_requeued")
            mark_enqueued(job.job_id, jobs)
        if len(batch) < BATCH:
            break
    return sent
