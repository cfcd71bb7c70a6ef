"""No job hangs in `processing`. The jobs DLQ is consumed (JobsDeadLetterFunction, `serve`'s jobs-dead-letter
poller): a job whose worker died on its last attempt ends `failed` and its callback fires once; a job that had ended
is left as it was. And a duplicate delivery that loses the race to start its job keeps its message, so the job still
runs if the run that won dies.

On moto (in-process), with the real ingest zip's `dead_letter_handler` driven by `serve`'s SQS poller, the real
redrive (maxReceiveCount from template.yaml) and the real callback handler posting to a loopback receiver.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from moto import mock_aws
from standardwebhooks import Webhook

from tests.conftest import ROOT
from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingMetrics
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.domain.ports import JobRepository
from video_ai.local.functions import lambda_context, load_function
from video_ai.local.pollers import SqsPoller, sns_lambda_event
from video_ai.local.resources import LocalResources, create_resources
from video_ai.runtime import Runtime, Secrets, install_runtime
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.services.announce import announce
from video_ai.settings import Settings
from video_ai.workers import MAX_RECEIVES, job_record_context


@dataclass
class Stack:
    runtime: Runtime
    metrics: RecordingMetrics
    resources: LocalResources
    sqs: Any
    tap: str  # a queue subscribed to the job-finished topic, standing in for the callback's subscription
    ingest: ModuleType
    callback: ModuleType
    deliveries: list[tuple[dict[str, str], bytes]]
    hook_url: str
    secret: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    deliveries: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    secret = generate_secret()
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, ROOT / "template.yaml", stage="test")
        settings = Settings.model_validate({
            "data_dir": str(tmp_path / "data"), "aws": {"region": "us-east-1", **resources.aws_settings()},
        }).development()
        metrics = RecordingMetrics()
        runtime = Runtime(settings, secrets=Secrets(webhook=[secret]), clients=AwsClients("us-east-1", session=session),
                          metrics=metrics)
        sqs = session.client("sqs")
        tap = sqs.create_queue(QueueName="job-finished-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        session.client("sns").subscribe(TopicArn=resources.topic_arn, Protocol="sqs", Endpoint=tap_arn)
        names = ("ingest", "callback")
        install_runtime(runtime)
        try:
            ingest, callback = (load_function(name) for name in names)
            yield Stack(runtime, metrics, resources, sqs, tap, ingest, callback, deliveries,
                        f"http://127.0.0.1:{server.server_address[1]}/hook", secret)
        finally:
            install_runtime(None)
            for name in names:
                sys.modules.pop(f"video_ai_fn_{name}_handler", None)
            runtime.close()
            server.shutdown()
            server.server_close()


def _job(stack: Stack, job_id: str) -> Job:
    jobs = stack.runtime.jobs()
    jobs.create(Job(job_id=job_id, tenant="t1", source=Source(url="https://example.com/v.mp4"),
                    callback_url=stack.hook_url))
    return jobs.transition(job_id, JobStatus.PROCESSING)


def _dead_letter_poll(stack: Stack) -> set[str]:
    """One invocation of the DLQ consumer, as `serve` runs it (and Lambda's event source mapping would)."""
    poller = SqsPoller("jobs-dead-letter", stack.sqs, stack.resources.jobs_dlq_url, stack.ingest.dead_letter_handler,
                       lambda: lambda_context("jobs-dead-letter", "test"), threading.Event(), batch_size=10,
                       wait_s=0)
    got = stack.sqs.receive_message(QueueUrl=stack.resources.jobs_dlq_url, MaxNumberOfMessages=10,
                                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
    assert got, "nothing in the jobs DLQ"
    return poller.dispatch([dict(m) for m in got])


def _published(stack: Stack) -> list[dict[str, Any]]:
    """The job-finished notifications published since the last call (SNS envelopes)."""
    envelopes = []
    while messages := stack.sqs.receive_message(QueueUrl=stack.tap, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            stack.sqs.delete_message(QueueUrl=stack.tap, ReceiptHandle=message["ReceiptHandle"])
    return envelopes


def _queue_depth(stack: Stack, url: str) -> int:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def test_a_job_whose_worker_died_on_its_last_attempt_ends_failed_and_calls_back_once(stack: Stack) -> None:
    job = _job(stack, "job-died")
    stack.runtime.queue().send({"job_id": job.job_id, "tenant": "t1"})
    # Every attempt dies before it can say anything (Lambda's timeout, out of memory): received, never deleted.
    for _ in range(MAX_RECEIVES):
        got = stack.sqs.receive_message(QueueUrl=stack.resources.jobs_queue_url, VisibilityTimeout=0)
        assert len(got.get("Messages", [])) == 1
    # The next receive finds the count exceeded: the queue's redrive moves the message to the DLQ.
    assert not stack.sqs.receive_message(QueueUrl=stack.resources.jobs_queue_url).get("Messages")
    stored = stack.runtime.jobs().get(job.job_id)
    assert stored is not None and stored.status is JobStatus.PROCESSING  # what hung before the DLQ was consumed

    assert _dead_letter_poll(stack) == set()
    stored = stack.runtime.jobs().get(job.job_id)
    assert stored is not None and stored.status is JobStatus.FAILED and stored.error is not None
    assert stored.error.code == "retries_exhausted" and "last attempt" in stored.error.message
    assert _queue_depth(stack, stack.resources.jobs_dlq_url) == 0  # consumed: the metric (alarmed) tells of it
    assert stack.metrics.counts[("jobs_dead_lettered", ())] == 1

    (envelope,) = _published(stack)
    stack.callback.handler(sns_lambda_event(envelope, "arn:aws:sns:us-east-1:123456789012:tap:1"),
                           lambda_context("callback", "test"))
    ((headers, raw),) = stack.deliveries
    delivered = Webhook(stack.secret).verify(raw, headers)
    assert delivered["type"] == "job.failed" and delivered["job_id"] == job.job_id
    assert delivered["data"]["error"]["code"] == "retries_exhausted"

    # The same message dead-lettered again (SQS is at-least-once): the end stands, nothing is published again.
    stack.sqs.send_message(QueueUrl=stack.resources.jobs_dlq_url, MessageBody=json.dumps({"job_id": job.job_id}))
    assert _dead_letter_poll(stack) == set()
    assert _published(stack) == [] and len(stack.deliveries) == 1


def test_a_dead_lettered_job_that_had_ended_is_left_as_it_was(stack: Stack) -> None:
    jobs = stack.runtime.jobs()
    _job(stack, "job-done")
    done = jobs.transition("job-done", JobStatus.SUCCEEDED, progress=1.0)
    announce(done, jobs, stack.runtime.notifier())
    assert len(_published(stack)) == 1
    body = json.dumps({"job_id": "job-done", "tenant": "t1"})
    for text in (body, json.dumps({"job_id": "job-gone"}), "not a job message"):
        stack.sqs.send_message(QueueUrl=stack.resources.jobs_dlq_url, MessageBody=text)

    assert _dead_letter_poll(stack) == set()  # an unknown job or a body that is no job message is dropped, logged
    stored = jobs.get("job-done")
    assert stored is not None and stored.status is JobStatus.SUCCEEDED and stored.error is None
    assert _published(stack) == []
    assert jobs.get("job-gone") is None
    assert _queue_depth(stack, stack.resources.jobs_dlq_url) == 0
    assert stack.metrics.counts[("jobs_dead_lettered", ())] == 3


class _StartedByAnotherRun:
    """The jobs table as a duplicate delivery sees it: another run starts the job, and takes its lease (a short one:
    WINNER_LEASE_S), just before this one tries."""

    def __init__(self, jobs: JobRepository) -> None:
        self.jobs = jobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.jobs, name)

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        current = self.jobs.get(job_id)
        if to is JobStatus.PROCESSING and current is not None and current.status is JobStatus.QUEUED:
            self.jobs.transition(job_id, JobStatus.PROCESSING)
            now = time.time()
            assert self.jobs.take_lease(job_id, "job", "the-winner", now + WINNER_LEASE_S, now)
        return self.jobs.transition(job_id, to, **fields)


WINNER_LEASE_S = 1.0


def _worker(stack: Stack, jobs: Any, tmp_path: Path) -> SqsPoller:
    """The worker function's record handling (handler.py, on fakes for the media and the model) behind `serve`'s
    poller: partial batch failures, and a failed record returns at once."""
    deps = AnalyzeDeps(jobs=jobs, fetcher=FakeFetcher(), frames=FakeFrameSource(), embedder=FakeEmbedder(),
                       index=FakeIndex(), notifier=stack.runtime.notifier(), workdir=tmp_path / "work")

    def record_handler(record: SQSRecord) -> None:
        with job_record_context(record, stack.runtime) as (message, final_attempt):
            analyze_video(message.job_id, deps, final_attempt=final_attempt, segment=message.segment)

    def handler(event: dict[str, Any], context: Any) -> Any:
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)

    return SqsPoller("worker", stack.sqs, stack.resources.jobs_queue_url, handler,
                     lambda: lambda_context("worker", "test"), threading.Event(), wait_s=0, retry_visibility_s=0)


def test_a_duplicate_that_loses_the_start_keeps_the_message_so_the_job_runs_if_the_winner_dies(
        stack: Stack, tmp_path: Path) -> None:
    jobs = stack.runtime.jobs()
    jobs.create(Job(job_id="job-dup", tenant="t1", source=Source(url="https://example.com/v.mp4"),
                    callback_url=stack.hook_url))
    stack.runtime.queue().send({"job_id": "job-dup", "tenant": "t1"})
    # The duplicate's delivery; the run that wins the start then dies without a word (its copy is the same message).
    got = stack.sqs.receive_message(QueueUrl=stack.resources.jobs_queue_url, AttributeNames=["All"],
                                    VisibilityTimeout=0)["Messages"]
    assert _worker(stack, _StartedByAnotherRun(jobs), tmp_path).dispatch([dict(m) for m in got]) == {
        got[0]["MessageId"]}
    stored = jobs.get("job-dup")
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.error is None
    assert _queue_depth(stack, stack.resources.jobs_queue_url) == 1  # kept: deleting it left the job hanging

    # Its next delivery, once the dead winner's lease has run out, finds the job processing with no live run, and
    # runs it to the end.
    time.sleep(WINNER_LEASE_S + 0.1)
    again = stack.sqs.receive_message(QueueUrl=stack.resources.jobs_queue_url, AttributeNames=["All"])["Messages"]
    assert _worker(stack, jobs, tmp_path).dispatch([dict(m) for m in again]) == set()
    stored = jobs.get("job-dup")
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert _queue_depth(stack, stack.resources.jobs_queue_url) == 0
    (envelope,) = _published(stack)
    assert json.loads(envelope["Message"])["type"] == "job.succeeded"
