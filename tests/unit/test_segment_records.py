"""record_segment: once per segment (a redelivered message does not count twice), on both job repositories."""

from __future__ import annotations

import pytest

from tests.unit.test_dynamodb_jobs import boto_session, clients, make_job, repo  # noqa: F401 - fixtures
from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.errors import JobNotFound


@pytest.fixture(params=["memory", "dynamodb"])
def any_repo(request: pytest.FixtureRequest) -> InMemoryJobRepository | DynamoDBJobRepository:
    if request.param == "memory":
        return InMemoryJobRepository()
    dynamo: DynamoDBJobRepository = request.getfixturevalue("repo")
    return dynamo


def test_each_segment_counts_once_and_results_come_back(
    any_repo: InMemoryJobRepository | DynamoDBJobRepository,
) -> None:
    any_repo.create(make_job("job-1"))
    assert any_repo.record_segment("job-1", 1, {"frames": 3, "shots": [{"start_s": 300.5}]}) == 1
    assert any_repo.record_segment("job-1", 1, {"frames": 3}) is None  # redelivery
    assert any_repo.record_segment("job-1", 0, {"frames": 5, "shots": []}) == 2
    results = any_repo.segment_results("job-1")
    assert results == {0: {"frames": 5, "shots": []}, 1: {"frames": 3, "shots": [{"start_s": 300.5}]}}
    job = any_repo.get("job-1")
    assert job is not None and job.job_id == "job-1"  # extra attributes never break reading the job


def test_record_segment_of_missing_job(any_repo: InMemoryJobRepository | DynamoDBJobRepository) -> None:
    with pytest.raises(JobNotFound):
        any_repo.record_segment("ghost", 0, {})
