"""The "job finished" outbox (services/announce.py): publish, mark, publish again only what may never have gone out."""

from __future__ import annotations

from tests.fakes import RecordingMetrics, RecordingNotifier
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.models import CallbackState, Job, JobStatus, Source
from video_ai.services.announce import announce, announce_if_unannounced, give_up


def _job(jobs: InMemoryJobRepository, status: JobStatus = JobStatus.PROCESSING) -> Job:
    job = jobs.create(Job(job_id="j1", tenant="t1", source=Source(url="https://example.com/v.mp4"),
                          callback_url="https://example.com/hook"))
    if status is not JobStatus.QUEUED:
        job = jobs.transition("j1", JobStatus.PROCESSING)
    if status.terminal:
        job = jobs.transition("j1", status)
    return job


def test_announce_publishes_then_marks_and_a_marked_job_is_not_published_again() -> None:
    jobs, notifier = InMemoryJobRepository(), RecordingNotifier()
    done = _job(jobs, JobStatus.SUCCEEDED)
    announce(done, jobs, notifier)
    stored = jobs.get("j1")
    assert [j.job_id for j in notifier.finished] == ["j1"] and stored is not None and stored.announced_at
    assert "announced_at" not in stored.public()  # bookkeeping: not in the record clients and receivers see
    assert announce_if_unannounced(stored, jobs, notifier) is False and len(notifier.finished) == 1


def test_only_a_finished_job_without_mark_or_callback_state_is_announced_again() -> None:
    jobs, notifier = InMemoryJobRepository(), RecordingNotifier()
    running = _job(jobs)
    assert announce_if_unannounced(running, jobs, notifier) is False
    done = jobs.transition("j1", JobStatus.SUCCEEDED)
    with_state = done.model_copy(update={"callback": CallbackState(status="pending", attempts=1)})
    assert announce_if_unannounced(with_state, jobs, notifier) is False
    assert announce_if_unannounced(done, jobs, notifier) is True
    assert notifier.finished == [done]


def test_give_up_fails_a_running_job_and_announces_it_once() -> None:
    jobs, notifier = InMemoryJobRepository(), RecordingNotifier()
    _job(jobs)
    metrics = RecordingMetrics()
    failed = give_up("j1", "serve stopped 5 times in a row while running this job", jobs, notifier, metrics)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error is not None
    # Counted where the worker's own failures are (video_ai_jobs_failed_total / JobsFailed), once.
    assert metrics.counts == {("jobs_failed", (("error_code", "retries_exhausted"),)): 1.0}
    assert failed.error.code == "retries_exhausted" and "5 times" in failed.error.message
    assert [j.status for j in notifier.finished] == [JobStatus.FAILED]
    # Again (a crash between failing the job and moving its message): the end stands, nothing is published twice.
    again = give_up("j1", "other words", jobs, notifier, metrics)
    assert again is not None and again.error == failed.error and len(notifier.finished) == 1
    assert sum(metrics.counts.values()) == 1.0
    assert give_up("missing", "gone", jobs, notifier) is None


def test_give_up_keeps_a_finished_jobs_end_and_announces_it_if_it_never_was() -> None:
    jobs, notifier = InMemoryJobRepository(), RecordingNotifier()
    _job(jobs, JobStatus.SUCCEEDED)
    kept = give_up("j1", "serve stopped", jobs, notifier)
    assert kept is not None and kept.status is JobStatus.SUCCEEDED and kept.error is None
    assert [j.status for j in notifier.finished] == [JobStatus.SUCCEEDED]
