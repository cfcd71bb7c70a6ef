"""Run leases and the send mark on the real DynamoDB API (a ThreadedMotoServer on 127.0.0.1): conditional writes over
HTTP, the sparse `by_unsent` index made from template.yaml, and analyze_video's duplicate and takeover paths on them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingMetrics, RecordingNotifier
from tests.integration.test_aws_adapters_server import TABLE, create_jobs_table, queue_with_arn
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
from video_ai.adapters.sqs_queue import SqsJobQueue
from video_ai.domain.errors import JobBusy, JobNotFound
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.services.requeue import requeue_unsent
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job


@pytest.fixture
def repo(moto_clients: AwsClients) -> DynamoDBJobRepository:
    create_jobs_table(moto_clients)
    return DynamoDBJobRepository(TABLE, moto_clients)


def _job(job_id: str) -> Job:
    return Job(job_id=job_id, tenant="t1", source=Source(url="https://example.com/v.mp4"))


def test_a_lease_is_taken_once_extended_by_its_holder_and_taken_over_only_when_expired(
        repo: DynamoDBJobRepository) -> None:
    repo.create(_job("j"))
    assert repo.take_lease("j", "job", "a", until=1060.0, now=1000.0)
    assert not repo.take_lease("j", "job", "b", until=1070.0, now=1010.0)  # a's is live
    assert repo.take_lease("j", "job", "a", until=1100.0, now=1040.0)  # a extends its own
    assert not repo.take_lease("j", "job", "b", until=1150.0, now=1090.0)
    assert repo.take_lease("j", "segment-0", "b", until=1150.0, now=1090.0)  # another slot: not blocked
    assert repo.take_lease("j", "job", "b", until=1200.0, now=1100.5)  # a's ran out: b takes over
    repo.release_lease("j", "job", "a")  # not a's any more: nothing happens
    assert repo.leases("j") == {"job": ("b", 1200.0), "segment-0": ("b", 1150.0)}
    repo.release_lease("j", "job", "b")
    assert repo.leases("j") == {"segment-0": ("b", 1150.0)}
    # Private: neither the model nor the public JSON carries them.
    stored = repo.get("j")
    assert stored is not None and not any(k.startswith("lease") for k in stored.public())
    with pytest.raises(JobNotFound):
        repo.take_lease("missing", "job", "a", until=1.0, now=0.0)


def test_racing_takers_of_one_lease_have_one_winner(repo: DynamoDBJobRepository,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()  # DynamoDB serialises writes to one item; moto does not: emulate that
    original = DynamoDBBackend.update_item

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", locked)
    repo.create(_job("r"))
    barrier = threading.Barrier(4, timeout=10)
    winners: list[str] = []

    def take(holder: str) -> None:
        barrier.wait()
        now = time.time()
        if repo.take_lease("r", "job", holder, now + 60, now):
            winners.append(holder)

    threads = [threading.Thread(target=take, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(winners) == 1 and repo.leases("r") == {"job": (winners[0], pytest.approx(time.time() + 60, abs=10))}


def test_serve_clears_every_lease_of_its_dead_previous_process(repo: DynamoDBJobRepository) -> None:
    for job_id in ("p1", "p2", "q"):
        repo.create(_job(job_id))
    for job_id in ("p1", "p2"):
        repo.transition(job_id, JobStatus.PROCESSING)
    now = time.time()
    assert repo.take_lease("p1", "job", "dead", now + 900, now)
    assert repo.take_lease("p2", "segment-3", "dead", now + 900, now)
    assert repo.take_lease("p2", "finalize", "dead", now + 900, now)
    repo.transition("p2", JobStatus.SUCCEEDED)  # killed between the job's end and the release
    assert repo.clear_leases() == 2
    assert repo.leases("p1") == {} and repo.leases("p2") == {} and repo.leases("q") == {}
    assert repo.take_lease("p1", "job", "new", now + 900, now)


def _deps(tmp_path: Path, repo: DynamoDBJobRepository, lease_s: float) -> AnalyzeDeps:
    return AnalyzeDeps(jobs=repo, fetcher=FakeFetcher(), frames=FakeFrameSource(n_frames=30), embedder=FakeEmbedder(),
                       index=FakeIndex(), notifier=RecordingNotifier(), workdir=tmp_path / "work",
                       metrics=RecordingMetrics(), batch_size=3, progress_every=3, lease_s=lease_s)


def test_a_duplicate_delivery_waits_while_the_owner_runs_and_takes_over_once_its_lease_expires(
        repo: DynamoDBJobRepository, tmp_path: Path) -> None:
    repo.create(_job("job-1"))
    deps = _deps(tmp_path, repo, lease_s=1.5)
    inside = threading.Event()
    release = threading.Event()
    busy: list[BaseException] = []

    def duplicate_mid_run(progress: float) -> None:  # the owner's thread, between two batches
        if inside.is_set():
            return
        inside.set()
        try:
            analyze_video("job-1", _deps(tmp_path, repo, lease_s=1.5), final_attempt=True)
        except JobBusy as err:
            busy.append(err)
        release.set()

    result = analyze_video("job-1", deps, on_progress=duplicate_mid_run)
    assert release.is_set() and len(busy) == 1  # the duplicate (even its last attempt) did not run the job
    assert result.job.status is JobStatus.SUCCEEDED and result.job.frames_indexed == 30
    assert isinstance(deps.notifier, RecordingNotifier) and len(deps.notifier.finished) == 1
    assert repo.leases("job-1") == {}

    # The owner dies mid-run: its lease stays behind, so a redelivery waits until it runs out, then takes over.
    repo.create(_job("job-2"))
    repo.update("job-1", content_key="other")  # no reuse: job-2 runs
    repo.transition("job-2", JobStatus.PROCESSING)
    now = time.time()
    assert repo.take_lease("job-2", "job", "the-dead-owner", now + 1.5, now)
    redelivery = _deps(tmp_path, repo, lease_s=1.5)
    with pytest.raises(JobBusy):
        analyze_video("job-2", redelivery)
    deadline = time.monotonic() + 10
    while True:
        try:
            result = analyze_video("job-2", redelivery)
            break
        except JobBusy:
            assert time.monotonic() < deadline, "the dead owner's lease never ran out"
            time.sleep(0.2)
    assert time.time() >= now + 1.5
    assert result.job.status is JobStatus.SUCCEEDED and result.job.frames_indexed == 30


def test_a_job_left_unsent_is_found_by_the_index_sent_once_and_leaves_the_index(
        repo: DynamoDBJobRepository, moto_clients: AwsClients) -> None:
    url, _ = queue_with_arn(moto_clients, "jobs")
    queue = SqsJobQueue(url, moto_clients)
    # Submitted normally: sent and marked, so never in the index.
    sent = submit_job(SubmitJob(source=Source(url="https://example.com/a.mp4"), tenant="t1"),
                      SubmitDeps(jobs=repo, queue=queue)).job
    marked = repo.get(sent.job_id)
    assert marked is not None and marked.enqueued_at is not None and "enqueued_at" not in marked.public()
    # Its submitter died between the record and the send; another one's job started (it left `queued`).
    repo.create(_job("orphan"))
    repo.create(_job("started"))
    repo.transition("started", JobStatus.PROCESSING)
    assert [j.job_id for j in repo.unsent("9999", 10)] == ["orphan"]
    assert repo.unsent("2000", 10) == []  # younger than the bound: its submitter may be alive

    requeued = requeue_unsent(repo, queue, older_than_s=0.0)
    assert [j.job_id for j in requeued] == ["orphan"]
    assert requeue_unsent(repo, queue, older_than_s=0.0) == []  # marked: not sent twice
    messages = moto_clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["job_id"] for m in messages) == sorted([sent.job_id, "orphan"])
