from __future__ import annotations

import pytest

from tests.fakes import RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.errors import ForbiddenAddress, IdempotencyConflict, TransientError
from video_ai.domain.models import JobStatus, Source
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job


class DenyHost:
    def check(self, url: str, field: str) -> None:
        if "169.254" in url:
            raise ForbiddenAddress("metadata address", field=field)


def _deps(queue: RecordingQueue | None = None) -> SubmitDeps:
    return SubmitDeps(jobs=InMemoryJobRepository(), queue=queue or RecordingQueue(), guard=DenyHost())


def test_submit_creates_queued_job_and_one_message() -> None:
    deps = _deps()
    out = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), tenant="t"), deps)
    assert out.created and out.job.status is JobStatus.QUEUED
    assert isinstance(deps.queue, RecordingQueue)
    assert deps.queue.messages == [{"job_id": out.job.job_id, "tenant": "t"}]


def test_idempotency_same_body_same_job_other_body_conflict() -> None:
    deps = _deps()
    cmd = SubmitJob(source=Source(url="https://e.com/v.mp4"), idempotency_key="k1")
    first = submit_job(cmd, deps)
    again = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), idempotency_key="k1"), deps)
    assert again.job.job_id == first.job.job_id and not again.created
    with pytest.raises(IdempotencyConflict):
        submit_job(SubmitJob(source=Source(url="https://e.com/other.mp4"), idempotency_key="k1"), deps)
    # Same key, other tenant: an unrelated job.
    other = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), idempotency_key="k1", tenant="b"), deps)
    assert other.job.job_id != first.job.job_id


def test_forbidden_callback_is_refused_before_anything_is_stored() -> None:
    deps = _deps()
    with pytest.raises(ForbiddenAddress) as err:
        submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), callback_url="http://169.254.169.254/"), deps)
    assert err.value.field == "callback_url"
    assert isinstance(deps.queue, RecordingQueue) and deps.queue.messages == []


def test_queue_down_fails_the_job_and_raises_transient() -> None:
    deps = _deps(RecordingQueue(error=TransientError("sqs down")))
    with pytest.raises(TransientError):
        submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4")), deps)
    jobs = deps.jobs
    assert isinstance(jobs, InMemoryJobRepository)
    (only,) = jobs.list_for_tenant("default", 10, None)[0]
    assert only.status is JobStatus.FAILED and only.error is not None and only.error.code == "queue_unavailable"


def test_a_job_is_marked_sent_and_an_idempotent_retry_sends_only_what_was_never_sent() -> None:
    deps = _deps()
    queue = deps.queue
    assert isinstance(queue, RecordingQueue)
    cmd = SubmitJob(source=Source(url="https://e.com/v.mp4"), idempotency_key="k1")
    first = submit_job(cmd, deps)
    stored = deps.jobs.get(first.job.job_id)
    assert stored is not None and stored.enqueued_at is not None and "enqueued_at" not in stored.public()
    assert submit_job(cmd, deps).job.job_id == first.job.job_id
    assert len(queue.messages) == 1  # sent and marked: the retry sends nothing

    # The first request's process died between the record and the send: the client's retry repairs it.
    dead = SubmitDeps(jobs=deps.jobs, queue=RecordingQueue(error=TransientError("the process died")))
    with pytest.raises(TransientError):
        submit_job(SubmitJob(source=Source(url="https://e.com/w.mp4"), idempotency_key="k2"), dead)
    (stranded,) = deps.jobs.unsent("9999", 10)
    assert stranded.status is JobStatus.QUEUED and stranded.enqueued_at is None
    again = submit_job(SubmitJob(source=Source(url="https://e.com/w.mp4"), idempotency_key="k2"), deps)
    assert not again.created and queue.messages[-1] == {"job_id": stranded.job_id, "tenant": "default"}
    assert deps.jobs.unsent("9999", 10) == []


def test_requeue_sends_the_jobs_left_unsent_past_the_bound_once() -> None:
    from datetime import UTC, datetime, timedelta

    from tests.fakes import RecordingMetrics
    from video_ai.domain.models import Job
    from video_ai.services.requeue import REQUEUE_AFTER_S, requeue_unsent

    jobs = InMemoryJobRepository()
    queue = RecordingQueue()
    old = (datetime.now(UTC) - timedelta(seconds=REQUEUE_AFTER_S + 5)).isoformat().replace("+00:00", "Z")
    jobs.create(Job(job_id="orphan", tenant="t", source=Source(url="https://e.com/v.mp4"), created_at=old))
    jobs.create(Job(job_id="young", tenant="t", source=Source(url="https://e.com/v.mp4")))  # its submitter may live
    jobs.create(Job(job_id="pending", tenant="t", source=Source(url="https://e.com/v.mp4"), created_at=old))
    jobs.create(Job(job_id="failed", tenant="t", source=Source(url="https://e.com/v.mp4"), created_at=old,
                    status=JobStatus.FAILED))
    metrics = RecordingMetrics()
    sent = requeue_unsent(jobs, queue, metrics=metrics, skip={"pending"})
    assert [j.job_id for j in sent] == ["orphan"] and queue.messages == [{"job_id": "orphan", "tenant": "t"}]
    assert metrics.counts[("jobs_requeued", ())] == 1
    assert [j.job_id for j in jobs.unsent("9999", 10)] == ["young"]  # "pending" was only marked
    assert requeue_unsent(jobs, queue, metrics=metrics) == []
    later = datetime.now(UTC) + timedelta(seconds=REQUEUE_AFTER_S + 5)
    assert [j.job_id for j in requeue_unsent(jobs, queue, now=later)] == ["young"]

    broken = RecordingQueue(error=TransientError("sqs down"))
    jobs.create(Job(job_id="next", tenant="t", source=Source(url="https://e.com/v.mp4"), created_at=old))
    with pytest.raises(TransientError):
        requeue_unsent(jobs, broken)
    assert [j.job_id for j in jobs.unsent("9999", 10)] == ["next"]  # found again by the next run
