"""SqsJobQueue, SnsNotifier and the S3 helpers/fetcher against moto's in-process AWS (mock_aws: no sockets)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from video_ai.adapters.aws import AwsClients
from video_ai.adapters.s3_store import (
    S3VideoFetcher,
    parse_s3_uri,
    s3_location_from_event_record,
    s3_locations_from_notification,
)
from video_ai.adapters.sns_notifier import SnsNotifier
from video_ai.adapters.sqs_queue import SqsJobQueue
from video_ai.domain.errors import (
    FetchFailed,
    InvalidRequest,
    SourceTooLarge,
    TransientError,
    VideoNotFound,
)
from video_ai.domain.models import ErrorInfo, Job, JobStatus, S3Location, Shot, Source, Timings

REGION = "us-east-1"
BUCKET = "video-ai-uploads-test"


@pytest.fixture(scope="module")
def boto_session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch, boto_session: boto3.session.Session) -> Iterator[AwsClients]:
    # mock_aws does not intercept when AWS_ENDPOINT_URL points boto3 elsewhere (FACTS.md).
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield AwsClients(REGION, session=boto_session)


def receive_all(clients: AwsClients, queue_url: str, want: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(10):  # bounded: moto delivers synchronously, so a few polls are plenty
        got = clients.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        messages.extend(got)  # type: ignore[arg-type]
        if len(messages) >= want:
            break
    return messages


def finished_job(status: JobStatus = JobStatus.SUCCEEDED, tenant: str = "acme") -> Job:
    return Job(
        job_id="job-1",
        status=status,
        tenant=tenant,
        source=Source(url="https://example.com/v.mp4"),
        frames_indexed=12,
        timings=Timings(total_s=1.5),
        error=ErrorInfo(code="unsupported_media", message="no") if status is JobStatus.FAILED else None,
        shots=[Shot(index=0, start_s=0.0, end_s=1.0, start_frame=0, end_frame=24)],
        request_hash="secret-ish",
    )


# -- SQS ---------------------------------------------------------------------------------------------------------


def test_sqs_send_receive_round_trip(clients: AwsClients) -> None:
    url = clients.sqs.create_queue(QueueName="jobs")["QueueUrl"]
    message = {"job_id": "job-1", "tenant": "acme", "segment": {"start_s": 0.5, "end_s": 300.25}, "note": "été"}
    SqsJobQueue(url, clients).send(message)
    (received,) = receive_all(clients, url, 1)
    assert json.loads(received["Body"]) == message
    assert received["MessageAttributes"]["tenant"]["StringValue"] == "acme"


def test_sqs_oversized_message_is_refused_before_sending(clients: AwsClients) -> None:
    url = clients.sqs.create_queue(QueueName="jobs")["QueueUrl"]
    with pytest.raises(InvalidRequest):
        SqsJobQueue(url, clients).send({"job_id": "x", "blob": "a" * 300_000})
    assert receive_all(clients, url, 1) == []


def test_sqs_errors_become_transient(clients: AwsClients) -> None:
    queue = SqsJobQueue("https://sqs.us-east-1.amazonaws.com/123456789012/jobs", clients)
    with Stubber(clients.sqs) as stub:
        stub.add_client_error("send_message", service_error_code="ServiceUnavailable", http_status_code=503)
        with pytest.raises(TransientError):
            queue.send({"job_id": "x"})


# -- SNS ---------------------------------------------------------------------------------------------------------


def subscribed_queue(clients: AwsClients, topic_arn: str, name: str, filter_policy: dict[str, Any] | None = None
                     ) -> str:
    url = clients.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"FilterPolicy": json.dumps(filter_policy)} if filter_policy else {}
    clients.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return url


def test_sns_envelope_reaches_sqs_subscriber_with_attributes(clients: AwsClients) -> None:
    topic = clients.sns.create_topic(Name="job-finished")["TopicArn"]
    url = subscribed_queue(clients, topic, "callbacks")
    job = finished_job()
    SnsNotifier(topic, clients).job_finished(job)
    (received,) = receive_all(clients, url, 1)
    envelope = json.loads(received["Body"])  # SNS's standard envelope around our message
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic
    message = json.loads(envelope["Message"])
    assert message == {"type": "job.succeeded", "job_id": "job-1", "timestamp": job.updated_at, "data": job.public()}
    assert "shots" not in message["data"] and "request_hash" not in message["data"]
    assert envelope["MessageAttributes"]["type"] == {"Type": "String", "Value": "job.succeeded"}
    assert envelope["MessageAttributes"]["tenant"] == {"Type": "String", "Value": "acme"}


def test_sns_filter_policy_on_type_attribute(clients: AwsClients) -> None:
    topic = clients.sns.create_topic(Name="job-finished")["TopicArn"]
    failures = subscribed_queue(clients, topic, "failures", {"type": ["job.failed"]})
    notifier = SnsNotifier(topic, clients)
    notifier.job_finished(finished_job(JobStatus.SUCCEEDED))
    notifier.job_finished(finished_job(JobStatus.FAILED))
    received = receive_all(clients, failures, 2)
    assert [json.loads(json.loads(m["Body"])["Message"])["type"] for m in received] == ["job.failed"]


def test_sns_refuses_unfinished_job(clients: AwsClients) -> None:
    topic = clients.sns.create_topic(Name="job-finished")["TopicArn"]
    with pytest.raises(ValueError):
        SnsNotifier(topic, clients).job_finished(finished_job(JobStatus.PROCESSING))


# -- s3:// URIs and event records ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://my-bucket/a/b.mp4", "my-bucket", "a/b.mp4"),
        ("s3://my.bucket.v2/clip with space+plus%20.mp4", "my.bucket.v2", "clip with space+plus%20.mp4"),
        ("s3://abc/vidéo/日本.mov", "abc", "vidéo/日本.mov"),
        ("s3://abc//leading-slash", "abc", "/leading-slash"),
    ],
)
def test_parse_s3_uri_valid(uri: str, bucket: str, key: str) -> None:
    assert parse_s3_uri(uri) == S3Location(bucket=bucket, key=key)


@pytest.mark.parametrize(
    "uri",
    [
        "https://bucket/key", "s3://bucket", "s3://bucket/", "s3:///key", "s3://ab/key", "s3://" + "a" * 64 + "/k",
        "s3://My-Bucket/k", "s3://bad_bucket/k", "s3://-bucket/k", "s3://bucket-/k", "s3://a..b/k",
        "s3://192.168.1.1/k", "s3://xn--bucket/k", "s3://bucket-s3alias/k", "s3://b.mrap/k",
        "s3://bucket/" + "k" * 1025,
    ],
)
def test_parse_s3_uri_invalid(uri: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_s3_uri(uri)
    assert info.value.field == "s3_uri"


def test_event_record_keys_are_url_decoded() -> None:
    key = "uploads/my vidéo + 1 (final).mp4"
    record = {"eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": "b"}, "object": {"key": quote_plus(key), "versionId": "v9"}}}
    assert s3_location_from_event_record(record) == S3Location(bucket="b", key=key, version="v9")
    assert s3_locations_from_notification(json.dumps({"Records": [record]})) == [
        S3Location(bucket="b", key=key, version="v9")
    ]
    assert s3_locations_from_notification({"Service": "Amazon S3", "Event": "s3:TestEvent"}) == []
    with pytest.raises(InvalidRequest):
        s3_location_from_event_record({"s3": {}})


def test_moto_notification_for_unicode_key_decodes_to_the_object(clients: AwsClients, tmp_path: Path) -> None:
    url = clients.sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients.s3.create_bucket(Bucket=BUCKET)
    clients.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    key = "in/my clip é+日本.mp4"
    data = os.urandom(4096)
    clients.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    locations = [loc for m in receive_all(clients, url, 2) for loc in s3_locations_from_notification(m["Body"])]
    assert locations == [S3Location(bucket=BUCKET, key=key)]
    fetched = S3VideoFetcher(clients, max_bytes=10_000).fetch(Source(s3=locations[0]), tmp_path)
    assert fetched.sha256 == hashlib.sha256(data).hexdigest()


# -- S3 fetcher --------------------------------------------------------------------------------------------------


@pytest.fixture
def bucket(clients: AwsClients) -> str:
    clients.s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def test_fetch_streams_and_hashes(clients: AwsClients, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)  # several 1 MiB chunks plus a tail
    clients.s3.put_object(Bucket=bucket, Key="v/clip.mp4", Body=data)
    fetched = S3VideoFetcher(clients, max_bytes=len(data)).fetch(
        Source(s3=S3Location(bucket=bucket, key="v/clip.mp4")), tmp_path / "work"
    )
    assert fetched.sha256 == hashlib.sha256(data).hexdigest()
    assert fetched.size_bytes == len(data)
    assert fetched.path.parent == tmp_path / "work" and fetched.path.suffix == ".mp4"
    assert fetched.path.read_bytes() == data


def test_fetch_accepts_s3_url_source(clients: AwsClients, bucket: str, tmp_path: Path) -> None:
    clients.s3.put_object(Bucket=bucket, Key="a b.mkv", Body=b"abc")
    fetched = S3VideoFetcher(clients, max_bytes=10).fetch(Source(url=f"s3://{bucket}/a b.mkv"), tmp_path)
    assert fetched.path.read_bytes() == b"abc"


def test_fetch_over_the_cap_fails_at_head_and_leaves_no_file(clients: AwsClients, bucket: str, tmp_path: Path) -> None:
    clients.s3.put_object(Bucket=bucket, Key="big.mp4", Body=b"x" * 2048)
    with Stubber(clients.s3) as stub:  # only HEAD may be called: the GET must never happen
        stub.add_response("head_object", {"ContentLength": 2048, "ETag": '"e"'},
                          {"Bucket": bucket, "Key": "big.mp4"})
        with pytest.raises(SourceTooLarge):
            S3VideoFetcher(clients, max_bytes=2047).fetch(Source(s3=S3Location(bucket=bucket, key="big.mp4")),
                                                          tmp_path)
        stub.assert_no_pending_responses()
    assert list(tmp_path.iterdir()) == []


def test_fetch_stream_longer_than_cap_is_cut_and_removed(clients: AwsClients, bucket: str, tmp_path: Path) -> None:
    clients.s3.put_object(Bucket=bucket, Key="grow.mp4", Body=b"x" * 4096)
    fetcher = S3VideoFetcher(clients, max_bytes=1000)
    original_head = clients.s3.head_object

    def lying_head(**kwargs: Any) -> Any:  # HEAD says small; the body is larger (a replaced object)
        response = original_head(**kwargs)
        response["ContentLength"] = 100
        return response

    clients.s3.head_object = lying_head  # type: ignore[method-assign]
    try:
        with pytest.raises(SourceTooLarge):
            fetcher.fetch(Source(s3=S3Location(bucket=bucket, key="grow.mp4")), tmp_path)
    finally:
        del clients.s3.head_object
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("bucket_name", "key"), [(BUCKET, "missing.mp4"), ("no-such-bucket", "k.mp4")])
def test_fetch_missing_is_video_not_found(clients: AwsClients, bucket: str, tmp_path: Path, bucket_name: str,
                                          key: str) -> None:
    with pytest.raises(VideoNotFound):
        S3VideoFetcher(clients, max_bytes=100).fetch(Source(s3=S3Location(bucket=bucket_name, key=key)), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_honours_version(clients: AwsClients, bucket: str, tmp_path: Path) -> None:
    clients.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = clients.s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"first version")["VersionId"]
    clients.s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"second, longer version")
    fetcher = S3VideoFetcher(clients, max_bytes=100)
    old = fetcher.fetch(Source(s3=S3Location(bucket=bucket, key="v.mp4", version=v1)), tmp_path)
    new = fetcher.fetch(Source(s3=S3Location(bucket=bucket, key="v.mp4")), tmp_path)
    assert old.path.read_bytes() == b"first version"
    assert old.sha256 == hashlib.sha256(b"first version").hexdigest()
    assert new.path.read_bytes() == b"second, longer version"
    with pytest.raises(VideoNotFound):
        fetcher.fetch(Source(s3=S3Location(bucket=bucket, key="v.mp4", version="nonexistentversion0000")), tmp_path)


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("403", 403, VideoNotFound), ("SlowDown", 503, FetchFailed), ("InternalError", 500, FetchFailed)],
)
def test_fetch_head_errors_map_to_domain(clients: AwsClients, tmp_path: Path, code: str, status: int,
                                         error: type[Exception]) -> None:
    with Stubber(clients.s3) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
        with pytest.raises(error) as info:
            S3VideoFetcher(clients, max_bytes=100).fetch(Source(s3=S3Location(bucket=BUCKET, key="k")), tmp_path)
    if code == "403":
        assert "access denied" in str(info.value)


def test_fetch_refuses_non_s3_source(clients: AwsClients, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        S3VideoFetcher(clients, max_bytes=100).fetch(Source(url="https://example.com/v.mp4"), tmp_path)
