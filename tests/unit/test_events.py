"""events/*.json (what `sam local invoke -e` takes) parse with powertools data classes and strict parser models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, SNSEvent, SQSEvent
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    S3SqsEventNotificationModel,
    SnsModel,
    SqsModel,
)

from video_ai.adapters.s3_store import s3_locations_from_notification
from video_ai.domain.models import Job, JobStatus
from video_ai.runtime import parse_job_message

EVENTS = Path(__file__).resolve().parents[2] / "events"
API_EVENTS = {"api_post_analyze.json": ("POST", "/analyze"), "api_health.json": ("GET", "/health")}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", ["api_post_analyze.json", "api_get_job.json", "api_health.json"])
def test_api_events_are_http_api_v2_payloads(name: str) -> None:
    raw = load(name)
    model = APIGatewayProxyEventV2Model.model_validate(raw)
    event = APIGatewayProxyEventV2(raw)
    assert model.version == "2.0" and model.isBase64Encoded is False
    assert event.request_context.http.method == model.requestContext.http.method
    assert event.raw_path == event.request_context.http.path == model.rawPath
    assert model.routeKey == model.requestContext.routeKey == "ANY /{proxy+}"  # the template's catch-all route
    if name in API_EVENTS:
        assert (event.request_context.http.method, event.raw_path) == API_EVENTS[name]


def test_post_analyze_carries_the_seed_body_and_an_api_key() -> None:
    event = APIGatewayProxyEventV2(load("api_post_analyze.json"))
    assert event.json_body == {"video_url": "https://example.com/video.mp4", "callback_url": "https://example.com/hook"}
    assert event.headers["x-api-key"] == "dev-key"
    assert event.headers["content-type"] == "application/json"
    assert int(event.headers["content-length"]) == len((event.body or "").encode())


def test_get_job_names_a_job_id() -> None:
    event = APIGatewayProxyEventV2(load("api_get_job.json"))
    prefix, job_id = event.raw_path.rsplit("/", 1)
    assert prefix == "/jobs" and len(job_id) == 36
    assert event.request_context.http.method == "GET" and event.body is None


@pytest.mark.parametrize(("name", "queue"), [("sqs_job.json", "JobsQueue"),
                                             ("sqs_dead_letter.json", "JobsDeadLetterQueue")])
def test_jobs_queue_events_carry_a_job_message(name: str, queue: str) -> None:
    raw = load(name)
    SqsModel.model_validate(raw)
    (record,) = SQSEvent(raw).records
    assert record.md5_of_body == hashlib.md5(record.body.encode()).hexdigest()
    assert record.attributes.approximate_receive_count == "1"
    assert record.event_source_arn.rsplit(":", 1)[1].startswith(f"video-ai-dev-{queue}-")
    message = parse_job_message(record.body)
    assert message.tenant == "default" and message.job_id


def test_the_dead_letter_event_names_another_job_than_the_worker_event() -> None:
    """The smoke run seeds each: one runs to `succeeded`, the other is ended by the dead-letter function."""
    bodies = {parse_job_message(SQSEvent(load(name)).raw_event["Records"][0]["body"]).job_id
              for name in ("sqs_job.json", "sqs_dead_letter.json")}
    assert len(bodies) == 2


def test_uploads_queue_event_carries_an_s3_notification_with_an_encoded_key() -> None:
    raw = load("sqs_upload.json")
    model = S3SqsEventNotificationModel.model_validate(raw)  # strict: every field a real S3 event has
    s3 = model.Records[0].body.Records[0].s3
    assert s3.bucket.name == "video-ai-uploads-dev"
    assert s3.object.key == "incoming/my%20clip+%C3%A9t%C3%A9.mp4"
    assert unquote_plus(s3.object.key) == "incoming/my clip été.mp4"
    (record,) = SQSEvent(raw).records
    (location,) = s3_locations_from_notification(record.body)
    assert (location.bucket, location.key) == ("video-ai-uploads-dev", "incoming/my clip été.mp4")


def test_job_finished_event_passes_the_strict_sns_model_and_carries_a_job() -> None:
    raw = load("sns_job_finished.json")
    model = SnsModel.model_validate(raw)
    sns = model.Records[0].Sns
    assert "EXAMPLE" not in json.dumps(raw)
    assert str(sns.TopicArn).startswith("arn:aws:sns:")
    (record,) = SNSEvent(raw).records
    envelope = json.loads(record.sns.message)
    assert envelope["type"] == "job.succeeded"
    job = Job.model_validate(envelope["data"])
    assert job.job_id == envelope["job_id"] and job.status is JobStatus.SUCCEEDED
    assert job.callback_url == "https://example.com/hook"
    assert envelope["data"] == job.public()  # exactly the public record, as the notifier publishes it
