"""The whole serverless chain in one process on moto (in-process mock_aws), with the real handlers and events.

API event -> Mangum -> job queued + SQS message -> worker handler -> job succeeded, points in Qdrant -> SNS message
-> callback handler -> signed POST to a loopback receiver. And: S3 upload -> uploads queue -> ingest -> job.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from standardwebhooks import Webhook

from tests.conftest import ROOT
from tests.lambda_events import api_event, functions_on, load_event
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.api.auth import hash_key
from video_ai.domain.models import SearchFilter
from video_ai.local.functions import lambda_context
from video_ai.local.resources import create_resources
from video_ai.runtime import Runtime, Secrets
from video_ai.samples import make_clip
from video_ai.settings import Settings

API_KEY = "chain-test-key"


@dataclass
class Receiver:
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@dataclass
class Chain:
    runtime: Runtime
    fn: dict[str, ModuleType]
    resources: Any
    session: boto3.session.Session
    video_url: str
    receiver: Receiver
    callback_url: str
    secret: str


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Chain]:
    media = tmp_path_factory.mktemp("media")
    make_clip(media / "clip.mp4", duration_s=6.0, fps=25.0, size=(320, 240), shots=[3.0])

    class Files(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(media), **kwargs)

        def log_message(self, *args: Any) -> None:
            return None

    receiver = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()
            receiver.event.set()

        def log_message(self, *args: Any) -> None:
            return None

    files, files_url = _serve(Files)
    hook, hook_url = _serve(Hook)
    secret = generate_secret()
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, ROOT / "template.yaml", stage="test")
        settings = Settings.model_validate({
            "data_dir": str(tmp_path_factory.mktemp("data")),
            "model": {"path": str(model_path)},
            "api": {"api_key_hashes": {hash_key(API_KEY): "t1"}},
            "aws": {"region": "us-east-1", **resources.aws_settings()},
        }).development()
        runtime = Runtime(settings, secrets=Secrets(webhook=[secret]),
                          clients=AwsClients("us-east-1", session=session))
        try:
            with functions_on(runtime) as fn:
                yield Chain(runtime, fn, resources, session, f"{files_url}/clip.mp4", receiver, f"{hook_url}/hook",
                            secret)
        finally:
            runtime.close()
            for server in (files, hook):
                server.shutdown()
                server.server_close()


def _api(chain: Chain, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = chain.fn["api"].handler(api_event(method, path, body, API_KEY), lambda_context("api"))
    payload = json.loads(response["body"]) if response.get("body") else None
    return int(response["statusCode"]), payload


def _sqs_event(chain: Chain, queue_url: str, template: str, max_messages: int = 10) -> dict[str, Any]:
    sqs = chain.session.client("sqs")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=max_messages, AttributeNames=["All"],
                              WaitTimeSeconds=0)
    base = load_event(template)["Records"][0]
    records = []
    for message in got.get("Messages", []):
        record = copy.deepcopy(base)
        record.update({"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                       "body": message["Body"], "attributes": message["Attributes"], "md5OfBody": message["MD5OfBody"]})
        records.append(record)
    return {"Records": records}


def _run_worker(chain: Chain) -> dict[str, Any]:
    event = _sqs_event(chain, chain.resources.jobs_queue_url, "sqs_job.json", max_messages=1)
    assert event["Records"], "no message on the jobs queue"
    result: dict[str, Any] = chain.fn["worker"].handler(event, lambda_context("worker"))
    return result


def test_post_analyze_to_signed_callback(chain: Chain) -> None:
    status, body = _api(chain, "POST", "/analyze", {"video_url": chain.video_url, "callback_url": chain.callback_url})
    assert status == 202 and body["status"] == "queued"
    job_id = body["job_id"]
    assert _api(chain, "GET", f"/jobs/{job_id}")[1]["status"] == "queued"

    # SNS -> a queue we read, standing in for the topic's Lambda subscription.
    sns, sqs = chain.session.client("sns"), chain.session.client("sqs")
    tap = sqs.create_queue(QueueName="sns-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=chain.resources.topic_arn, Protocol="sqs", Endpoint=tap_arn)

    assert _run_worker(chain) == {"batchItemFailures": []}
    status, job = _api(chain, "GET", f"/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    assert job["frames_indexed"] == 6 and job["shots_detected"] == 2
    assert job["video"]["codec"] == "h264" and job["model"]["dim"] == 1280 and len(job["sha256"]) == 64
    model = chain.runtime.embedder().info
    assert chain.runtime.index().count(model, SearchFilter(job_id=job_id)) == 6

    envelope = json.loads(sqs.receive_message(QueueUrl=tap, WaitTimeSeconds=1)["Messages"][0]["Body"])
    sns_event = load_event("sns_job_finished.json")
    sns_event["Records"][0]["Sns"]["Message"] = envelope["Message"]
    sns_event["Records"][0]["Sns"]["MessageId"] = envelope["MessageId"]
    chain.fn["callback"].handler(sns_event, lambda_context("callback"))
    assert chain.receiver.event.wait(10)
    headers, raw = chain.receiver.deliveries[-1]
    delivered = Webhook(chain.secret).verify(raw, headers)
    assert delivered["type"] == "job.succeeded" and delivered["job_id"] == job_id
    assert delivered["data"]["frames_indexed"] == 6
    status, job = _api(chain, "GET", f"/jobs/{job_id}")
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] == 1

    # The routes that need Qdrant or the model run on the worker image (SearchFunction -> handler.http_handler).
    search_event = api_event("POST", "/search", {"frame": {"job_id": job_id, "index": 4}, "top_k": 2}, API_KEY)
    response = chain.fn["worker"].http_handler(search_event, lambda_context("worker"))
    hits = json.loads(response["body"])["items"]
    assert response["statusCode"] == 200 and hits[0]["pts_s"] == pytest.approx(4.0, abs=0.04)

    # Redelivery of the same job message: no duplicate points, the job stays succeeded.
    chain.runtime.queue().send({"job_id": job_id, "tenant": "t1"})
    assert _run_worker(chain) == {"batchItemFailures": []}
    assert chain.runtime.index().count(model, SearchFilter(job_id=job_id)) == 6


def test_bad_record_fails_alone(chain: Chain) -> None:
    sqs = chain.session.client("sqs")
    status, body = _api(chain, "POST", "/analyze", {"video_url": chain.video_url})
    assert status == 202
    sqs.send_message(QueueUrl=chain.resources.jobs_queue_url, MessageBody="this is not a job message")
    event = _sqs_event(chain, chain.resources.jobs_queue_url, "sqs_job.json")
    assert len(event["Records"]) == 2
    bad = next(r["messageId"] for r in event["Records"] if r["body"].startswith("this"))
    result = chain.fn["worker"].handler(event, lambda_context("worker"))
    assert result == {"batchItemFailures": [{"itemIdentifier": bad}]}
    assert _api(chain, "GET", f"/jobs/{body['job_id']}")[1]["status"] == "succeeded"


def test_s3_upload_to_job(chain: Chain) -> None:
    s3 = chain.session.client("s3")
    key = "tenants/t1/incoming/my clip été.mp4"
    s3.put_object(Bucket=chain.resources.uploads_bucket, Key=key, Body=_download(chain.video_url))
    event = _sqs_event(chain, chain.resources.uploads_queue_url, "sqs_upload.json")
    records = [r for r in event["Records"] if "s3:TestEvent" not in r["body"]]
    assert records, "the S3 notification did not reach the uploads queue"
    assert chain.fn["ingest"].handler({"Records": records}, lambda_context("ingest")) == {"batchItemFailures": []}
    status, page = _api(chain, "GET", "/jobs")
    assert status == 200
    s3_jobs = [j for j in page["items"] if j["source"]["s3"] is not None]
    assert len(s3_jobs) == 1 and s3_jobs[0]["source"]["s3"]["key"] == key and s3_jobs[0]["status"] == "queued"
    # The same notification again (at-least-once): still one job.
    chain.fn["ingest"].handler({"Records": records}, lambda_context("ingest"))
    assert len([j for j in _api(chain, "GET", "/jobs")[1]["items"] if j["source"]["s3"] is not None]) == 1
    assert _run_worker(chain) == {"batchItemFailures": []}
    job = _api(chain, "GET", f"/jobs/{s3_jobs[0]['job_id']}")[1]
    assert job["status"] == "succeeded" and job["frames_indexed"] == 6

    def upload(body: bytes) -> list[dict[str, Any]]:
        s3.put_object(Bucket=chain.resources.uploads_bucket, Key=key, Body=body)
        notified = _sqs_event(chain, chain.resources.uploads_queue_url, "sqs_upload.json")
        assert chain.fn["ingest"].handler({"Records": notified["Records"]}, lambda_context("ingest")) == {
            "batchItemFailures": []}
        return [j for j in _api(chain, "GET", "/jobs")[1]["items"] if j["source"]["s3"] is not None]

    # Other bytes under the same key (no versioning: no version id) are a new upload: a new job.
    other = _download(chain.video_url)[: -1] + b"\0"
    assert len(upload(other)) == 2
    # The same bytes again are the same upload: the existing job, no third.
    assert len(upload(other)) == 2
    assert _run_worker(chain) == {"batchItemFailures": []}  # the new job's message: leave the queue empty


def _download(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:  # loopback test server
        data: bytes = response.read()
        return data


def test_a_long_upload_is_split_and_its_segments_read_byte_ranges(chain: Chain, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker as deployed (Runtime.analyze_deps): an upload longer than scale.segment_s is split in three; each
    segment reads byte ranges of the object, pinned to it (a private field GET /jobs/{id} never shows)."""
    settings = chain.runtime.settings
    scale = settings.scale.model_copy(update={"segment_s": 4.0})
    monkeypatch.setattr(chain.runtime, "settings", settings.model_copy(update={"scale": scale}))
    make_clip(tmp_path / "long.mp4", duration_s=12.0, fps=25.0, size=(320, 240), shots=[5.0], gop=25)
    s3 = chain.session.client("s3")
    key = "tenants/t1/incoming/long.mp4"
    s3.put_object(Bucket=chain.resources.uploads_bucket, Key=key, Body=(tmp_path / "long.mp4").read_bytes())
    event = _sqs_event(chain, chain.resources.uploads_queue_url, "sqs_upload.json")
    records = [r for r in event["Records"] if "s3:TestEvent" not in r["body"]]
    assert chain.fn["ingest"].handler({"Records": records}, lambda_context("ingest")) == {"batchItemFailures": []}
    job_id = next(j["job_id"] for j in _api(chain, "GET", "/jobs")[1]["items"]
                  if j["source"]["s3"] is not None and j["source"]["s3"]["key"] == key)
    messages: list[dict[str, Any]] = []
    for _ in range(4):  # the job's message (the split), then its segments; and any message an earlier test left
        event = _sqs_event(chain, chain.resources.jobs_queue_url, "sqs_job.json")
        if not event["Records"]:
            break
        messages += [json.loads(r["body"]) for r in event["Records"]]
        assert chain.fn["worker"].handler(event, lambda_context("worker")) == {"batchItemFailures": []}
        if _api(chain, "GET", f"/jobs/{job_id}")[1]["status"] == "succeeded":
            break
    assert sorted(m["segment"] for m in messages if m["job_id"] == job_id and "segment" in m) == [0, 1, 2]

    status, job = _api(chain, "GET", f"/jobs/{job_id}")
    assert status == 200 and job["status"] == "succeeded" and job["frames_indexed"] == 12, job
    assert job["segments_total"] == 3 and "source_etag" not in job and "staged_source" not in job
    stored = chain.runtime.jobs().get(job_id)
    head = s3.head_object(Bucket=chain.resources.uploads_bucket, Key=key)
    assert stored is not None and stored.source_etag == head["ETag"]
    results = chain.runtime.jobs().segment_results(job_id)
    assert sorted(results) == [0, 1, 2] and all(0 < r["bytes_fetched"] <= head["ContentLength"]
                                                 for r in results.values())
