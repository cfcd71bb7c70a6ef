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
