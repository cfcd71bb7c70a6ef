"""The AWS adapters over real HTTP: a ThreadedMotoServer on 127.0.0.1 (what `video-ai serve` runs), port 0."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from video_ai.adapters.aws import AwsClients
from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
from video_ai.adapters.s3_store import S3VideoFetcher, s3_locations_from_notification
from video_ai.adapters.sns_notifier import SnsNotifier
from video_ai.adapters.sqs_queue import SqsJobQueue
from video_ai.domain.errors import FetchFailed, InvalidTransition, TransientError
from video_ai.domain.models import Job, JobStatus, S3Location, Source
from video_ai.local.resources import create_jobs_table as create_table_from_template

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
TABLE = "video-ai-jobs-table-it"  # the template's default name for JobsTable at stage "it"


@pytest.fixture
def clients(moto_clients: AwsClients) -> AwsClients:
    return moto_clients  # tests/conftest.py: on this module's moto server, reset after each test


def create_jobs_table(clients: AwsClients) -> None:
    assert create_table_from_template(clients, ROOT / "template.yaml", stage="it") == TABLE


def queue_with_arn(clients: AwsClients, name: str) -> tuple[str, str]:
    url = clients.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def uploads_bucket_notifying(clients: AwsClients, bucket: str) -> str:
    """A bucket that notifies a new queue (returned) of created `.mp4` objects, like the template's uploads bucket."""
    uploads_url, uploads_arn = queue_with_arn(clients, "uploads")
    clients.s3.create_bucket(Bucket=bucket)
    clients.s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": uploads_arn, "Events": ["s3:ObjectCreated:*"],
                                                            "Filter": {"Key": {"FilterRules": [
                                                                {"Name": "suffix", "Value": ".mp4"}]}}}]},
    )
    return uploads_url


def receive(clients: AwsClients, url: str, want: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(10):
        got = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                          WaitTimeSeconds=0).get("Messages", [])
        out.extend(got)  # type: ignore[arg-type]
        if len(out) >= want:
            break
    return out


def test_job_lifecycle_queue_and_notification_over_http(clients: AwsClients) -> None:
    create_jobs_table(clients)
    repo = DynamoDBJobRepository(TABLE, clients)
    jobs_url, _ = queue_with_arn(clients, "jobs")
    callbacks_url, callbacks_arn = queue_with_arn(clients, "callbacks")
    topic = clients.sns.create_topic(Name="job-finished")["TopicArn"]
    clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=callbacks_arn)

    job = Job(job_id="j-1", tenant="acme", source=Source(url="https://example.com/v.mp4"))
    stored, created = repo.create_idempotent(job, "key", "hash")
    assert created
    assert repo.create_idempotent(job, "key", "hash") == (stored, False)
    SqsJobQueue(jobs_url, clients).send({"job_id": "j-1", "tenant": "acme"})
    (message,) = receive(clients, jobs_url, 1)
    job_id = json.loads(message["Body"])["job_id"]

    repo.transition(job_id, JobStatus.PROCESSING)
    repo.update(job_id, progress=0.5, sha256="00" * 32)
    done = repo.transition(job_id, JobStatus.SUCCEEDED, frames_indexed=3, progress=1.0)
    with pytest.raises(InvalidTransition):  # a redelivered message cannot regress a finished job
        repo.transition(job_id, JobStatus.PROCESSING)
    SnsNotifier(topic, clients).job_finished(done)

    (notification,) = receive(clients, callbacks_url, 1)
    envelope = json.loads(notification["Body"])
    body = json.loads(envelope["Message"])
    assert body["type"] == "job.succeeded" and body["data"]["frames_indexed"] == 3
    assert body["data"]["sha256"] == "00" * 32
    assert envelope["MessageAttributes"]["tenant"]["Value"] == "acme"


def test_paging_over_http(clients: AwsClients) -> None:
    create_jobs_table(clients)
    repo = DynamoDBJobRepository(TABLE, clients)
    for i in range(5):
        repo.create(Job(job_id=f"a{i}", tenant="acme", created_at=f"2024-05-01T00:00:0{i}.000Z",
                        source=Source(url="https://example.com/v.mp4")))
    repo.create(Job(job_id="b0", tenant="beta", source=Source(url="https://example.com/v.mp4")))
    ids: list[str] = []
    token: str | None = None
    for _ in range(10):
        page, token = repo.list_for_tenant("acme", 2, token)
        ids.extend(j.job_id for j in page)
        if token is None:
            break
    assert ids == ["a4", "a3", "a2", "a1", "a0"]


def test_racing_transitions_over_http_have_one_winner(clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    # moto checks conditions and writes without a lock; DynamoDB serialises writes to one item. Emulate that.
    lock = threading.Lock()
    original = DynamoDBBackend.update_item

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", locked)
    create_jobs_table(clients)
    repo = DynamoDBJobRepository(TABLE, clients)
    for n in range(5):
        job_id = f"r{n}"
        repo.create(Job(job_id=job_id, source=Source(url="https://example.com/v.mp4")))
        repo.transition(job_id, JobStatus.PROCESSING)
        barrier = threading.Barrier(2, timeout=10)
        wins: list[JobStatus] = []

        def attempt(to: JobStatus, job_id: str = job_id, barrier: threading.Barrier = barrier,
                    wins: list[JobStatus] = wins) -> None:
            barrier.wait()
            try:
                repo.transition(job_id, to)
                wins.append(to)
            except InvalidTransition:
                pass

        threads = [threading.Thread(target=attempt, args=(s,)) for s in (JobStatus.SUCCEEDED, JobStatus.FAILED)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(wins) == 1
        final = repo.get(job_id)
        assert final is not None and final.status is wins[0]


def test_s3_upload_notification_and_fetch_over_http(clients: AwsClients, tmp_path: Path) -> None:
    uploads_url = uploads_bucket_notifying(clients, "uploads-it")
    key = "incoming/Été 2024 + friends.mp4"
    data = os.urandom(2 * 1024 * 1024 + 7)
    clients.s3.put_object(Bucket="uploads-it", Key=key, Body=data)
    clients.s3.put_object(Bucket="uploads-it", Key="notes.txt", Body=b"ignored by the suffix filter")
    locations = [loc for m in receive(clients, uploads_url, 2) for loc in s3_locations_from_notification(m["Body"])]
    assert locations == [S3Location(bucket="uploads-it", key=key)]
    fetched = S3VideoFetcher(clients, max_bytes=len(data)).fetch(Source(s3=locations[0]), tmp_path)
    assert fetched.sha256 == hashlib.sha256(data).hexdigest() and fetched.size_bytes == len(data)


def test_a_staged_copy_reads_back_identical_and_makes_no_job(clients: AwsClients, tmp_path: Path) -> None:
    from video_ai.adapters.s3_store import S3SourceStager

    uploads_url = uploads_bucket_notifying(clients, "uploads-it")
    source = tmp_path / "fetched.mp4"
    data = os.urandom(9 * 1024 * 1024 + 3)  # above boto3's 8 MiB multipart threshold: a multipart upload
    source.write_bytes(data)
    staged = S3SourceStager(clients, "uploads-it").stage("job-1", source)
    assert staged.s3 is not None and staged.s3.key == "staging/job-1/source"
    fetched = S3VideoFetcher(clients, max_bytes=len(data)).fetch(staged, tmp_path / "segment")
    assert fetched.sha256 == hashlib.sha256(data).hexdigest() and fetched.size_bytes == len(data)
    # No video suffix: the uploads queue hears of no object (only S3's test event for the configuration).
    assert [loc for m in receive(clients, uploads_url, 2) for loc in s3_locations_from_notification(m["Body"])] == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_endpoint_maps_to_retryable_errors(tmp_path: Path) -> None:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    config = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=1)
    dead = AwsClients(REGION, endpoint_url=f"http://127.0.0.1:{_closed_port()}", session=session, config=config)
    with pytest.raises(TransientError):
        DynamoDBJobRepository(TABLE, dead).get("x")
    with pytest.raises(TransientError):
        SqsJobQueue("http://127.0.0.1/queue/jobs", dead).send({"job_id": "x"})
    with pytest.raises(FetchFailed):
        S3VideoFetcher(dead, max_bytes=10).fetch(Source(s3=S3Location(bucket="b-b-b", key="k")), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_s3_artifacts_put_get_copy_delete(clients: AwsClients) -> None:
    from video_ai.adapters.s3_store import S3Artifacts

    clients.s3.create_bucket(Bucket="artifacts-bucket")
    store = S3Artifacts(clients, "artifacts-bucket")
    store.put("job-a", "transcript.json", b'{"segments": []}')
    store.put("job-a", "text.json", b'{"items": []}')
    assert store.get("job-a", "transcript.json") == b'{"segments": []}'
    assert store.get("job-a", "other.json") is None and store.get("job-b", "text.json") is None
    assert store.get("job-a", "../x") is None
    head = clients.s3.head_object(Bucket="artifacts-bucket", Key="artifacts/job-a/transcript.json")
    assert head["ContentType"] == "application/json"
    assert store.copy("job-a", "job-b") == 2 and store.get("job-b", "text.json") == b'{"items": []}'
    store.delete("job-a")
    assert store.get("job-a", "text.json") is None and store.get("job-b", "transcript.json") is not None
    with pytest.raises(ValueError, match="not a job id"):
        store.put("a/../b", "x.json", b"{}")


def test_s3_thumbnails_put_get_copy_delete_and_no_job_from_them(clients: AwsClients) -> None:
    from video_ai.adapters.s3_store import S3Thumbnails

    uploads_url = uploads_bucket_notifying(clients, "thumbs-bucket")
    store = S3Thumbnails(clients, "thumbs-bucket")
    for index in range(3):
        store.put("job-a", index, b"\xff\xd8" + bytes([index]))
    assert store.get("job-a", 2) == b"\xff\xd8\x02"
    assert store.get("job-a", 3) is None and store.get("job-b", 0) is None
    head = clients.s3.head_object(Bucket="thumbs-bucket", Key="thumbnails/job-a/0.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert store.copy("job-a", "job-b") == 3 and store.get("job-b", 1) == b"\xff\xd8\x01"
    store.delete("job-a")
    assert store.get("job-a", 0) is None and store.get("job-b", 0) == b"\xff\xd8\x00"
    # Only the test event: a thumbnail has no video suffix, so the uploads notification never makes it a job.
    bodies = [json.loads(m["Body"]) for m in receive(clients, uploads_url, 1)]
    assert all(b.get("Event") == "s3:TestEvent" for b in bodies)
