"""create_resources on a moto server: the resources behave as template.yaml says (notifications, redrive, fan-out)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from video_ai.local.resources import LocalResources, create_resources, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture(scope="module")
def resources(session: boto3.session.Session, moto_endpoint: str) -> LocalResources:
    return create_resources(session, TEMPLATE, stage="test", endpoint_url=moto_endpoint)


@pytest.fixture(scope="module")
def sqs(session: boto3.session.Session, moto_endpoint: str) -> Any:
    return session.client("sqs", endpoint_url=moto_endpoint)


@pytest.fixture(scope="module")
def s3(session: boto3.session.Session, moto_endpoint: str) -> Any:
    return session.client("s3", endpoint_url=moto_endpoint)


def _template_properties(logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = load_template(TEMPLATE)["Resources"][logical_id]["Properties"]
    return props


def _s3_records(sqs: Any, queue_url: str, want: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """S3 event records from the queue (deleting what it reads, skipping s3:TestEvent) until `want` or the timeout."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in messages.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(message["Body"])
            if body.get("Event") != "s3:TestEvent":
                records.extend(body["Records"])
        if not messages.get("Messages"):
            time.sleep(0.05)
    return records


def _drain(sqs: Any, queue_url: str) -> None:
    """Delete whatever is visible (PurgeQueue is limited to once a minute per queue)."""
    for _ in range(20):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_names_follow_the_stage(resources: LocalResources) -> None:
    assert resources.table_name == "video-ai-jobs-table-test"
    assert resources.jobs_queue_url.endswith("/video-ai-jobs-queue-test")
    assert resources.uploads_bucket == "video-ai-uploads-test-123456789012-us-east-1"
    assert resources.topic_arn.endswith(":video-ai-job-finished-topic-test")
    assert resources.environment()["VIDEO_AI__AWS__JOBS_QUEUE_URL"] == resources.jobs_queue_url


def test_table_has_the_templates_keys_indexes_and_ttl(
    resources: LocalResources, session: boto3.session.Session, moto_endpoint: str
) -> None:
    ddb = session.client("dynamodb", endpoint_url=moto_endpoint)
    table = ddb.describe_table(TableName=resources.table_name)["Table"]
    props = _template_properties("JobsTable")
    assert table["KeySchema"] == props["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by_tenant", "by_content", "by_unsent"}
    assert indexes["by_tenant"]["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert indexes["by_unsent"]["KeySchema"] == [
        {"AttributeName": "unsent", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert indexes["by_content"]["Projection"]["ProjectionType"] == "ALL"
    ttl = ddb.describe_time_to_live(TableName=resources.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_queues_carry_the_templates_attributes(resources: LocalResources, sqs: Any) -> None:
    attributes = sqs.get_queue_attributes(QueueUrl=resources.jobs_queue_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=resources.jobs_dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    assert attributes["VisibilityTimeout"] == str(_template_properties("JobsQueue")["VisibilityTimeout"]) == "5400"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": 3}
    uploads = sqs.get_queue_attributes(QueueUrl=resources.uploads_queue_url, AttributeNames=["Policy"])["Attributes"]
    statement = json.loads(uploads["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{resources.uploads_bucket}"


def test_an_upload_reaches_the_uploads_queue_with_its_key_url_encoded(
    resources: LocalResources, sqs: Any, s3: Any
) -> None:
    _drain(sqs, resources.uploads_queue_url)
    key = "incoming/my clip été.mp4"
    s3.put_object(Bucket=resources.uploads_bucket, Key=key, Body=b"\x00\x00\x00\x18ftypmp42")
    records = _s3_records(sqs, resources.uploads_queue_url, want=1)
    assert len(records) == 1
    record = records[0]
    assert record["eventName"].startswith("ObjectCreated")
    assert record["s3"]["bucket"]["name"] == resources.uploads_bucket
    encoded = record["s3"]["object"]["key"]
    assert encoded != key and " " not in encoded and "é" not in encoded
    assert unquote_plus(encoded) == key


def test_only_video_suffixes_notify_in_either_case(resources: LocalResources, sqs: Any, s3: Any) -> None:
    _drain(sqs, resources.uploads_queue_url)
    for key in ("notes.txt", "clip.mp4.part", "thumb.jpg"):
        s3.put_object(Bucket=resources.uploads_bucket, Key=key, Body=b"x")
    # The last upload is a sentinel: notifications arrive in order, so once it is in, any stray one would be too.
    for key in ("CAMERA/IMG_0001.MOV", "a.webm", "b.M4V", "zz-sentinel.mkv"):
        s3.put_object(Bucket=resources.uploads_bucket, Key=key, Body=b"x")
    records = _s3_records(sqs, resources.uploads_queue_url, want=4)
    keys = sorted(unquote_plus(r["s3"]["object"]["key"]) for r in records)
    assert keys == ["CAMERA/IMG_0001.MOV", "a.webm", "b.M4V", "zz-sentinel.mkv"]


def test_a_job_message_moves_to_the_dlq_after_three_receives(resources: LocalResources, sqs: Any) -> None:
    _drain(sqs, resources.jobs_queue_url)
    _drain(sqs, resources.jobs_dlq_url)
    body = json.dumps({"job_id": "job-dlq", "tenant": "default"})
    sqs.send_message(QueueUrl=resources.jobs_queue_url, MessageBody=body)
    receives = 0
    for _ in range(4):  # a failing consumer: receive, then make it visible again at once
        messages = sqs.receive_message(QueueUrl=resources.jobs_queue_url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            break
        receives += 1
        sqs.change_message_visibility(
            QueueUrl=resources.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
        )
    assert receives == 3
    dead = sqs.receive_message(QueueUrl=resources.jobs_dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == [body]


def test_the_job_finished_topic_delivers_to_an_sqs_subscriber(
    resources: LocalResources, sqs: Any, session: boto3.session.Session, moto_endpoint: str
) -> None:
    sns = session.client("sns", endpoint_url=moto_endpoint)
    probe_url = sqs.create_queue(QueueName="job-finished-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=resources.topic_arn, Protocol="sqs", Endpoint=probe_arn)
    message = json.dumps({"type": "job.succeeded", "job_id": "job-1", "timestamp": "2026-01-01T00:00:00Z", "data": {}})
    sns.publish(TopicArn=resources.topic_arn, Message=message)
    received = sqs.receive_message(QueueUrl=probe_url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
    assert len(received) == 1
    envelope = json.loads(received[0]["Body"])
    assert envelope["TopicArn"] == resources.topic_arn
    assert json.loads(envelope["Message"])["job_id"] == "job-1"


def test_creating_again_finds_the_same_resources(
    resources: LocalResources, session: boto3.session.Session, moto_endpoint: str
) -> None:
    assert create_resources(session, TEMPLATE, stage="test", endpoint_url=moto_endpoint) == resources
