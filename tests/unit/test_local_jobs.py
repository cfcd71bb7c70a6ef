"""FileJobRepository: jobs as JSON files, one per id."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import RecordingQueue
from video_ai.adapters.local_jobs import FileJobRepository
from video_ai.domain.errors import JobNotFound
from video_ai.domain.models import CallbackMessage, Job, Sampling, Source
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job


def test_an_id_that_maps_to_another_jobs_file_name_is_not_that_job(tmp_path: Path) -> None:
    jobs = FileJobRepository(tmp_path)
    job = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), tenant="t", sampling=Sampling()),
                     SubmitDeps(jobs=jobs, queue=RecordingQueue())).job
    stored = jobs.get(job.job_id)
    assert stored is not None and stored.enqueued_at is not None  # sent, then marked
    assert stored.model_copy(update={"enqueued_at": None}) == job
    # File names keep only letters, digits and '-': these ids name the same file, but not the job.
    for alias in (job.job_id.replace("-", "-.", 1), f"{job.job_id}/", f"../jobs/{job.job_id}", ""):
        assert jobs.get(alias) is None, alias


def test_the_first_callback_message_kept_wins_and_survives_a_reload(tmp_path: Path) -> None:
    jobs = FileJobRepository(tmp_path)
    jobs.create(Job(job_id="j1", source=Source(url="https://e.com/v.mp4")))
    first = CallbackMessage(webhook_id="msg_a", body='{"type":"job.succeeded"}')
    assert jobs.keep_callback_message("j1", first) == first
    assert jobs.keep_callback_message("j1", CallbackMessage(webhook_id="msg_b", body="{}")) == first
    got = FileJobRepository(tmp_path).get("j1")
    assert got is not None and got.callback_message == first and "callback_message" not in got.public()
    with pytest.raises(JobNotFound):
        jobs.keep_callback_message("ghost", first)
