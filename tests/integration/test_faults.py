"""Faults on the real chain (in-process moto, the real handlers, the real model and embedded Qdrant).

Qdrant failing mid-job, two workers on one message, a callback receiver down then up, one SQS message delivered
three times, a worker killed mid-job, a worker killed between recording a job's end and publishing it. Jobs-queue
deliveries go through `SqsPoller.dispatch` (the stand-in `serve` uses for Lambda's event source mapping), so partial
failures, redelivery and the DLQ redrive are SQS's own.
"""

from __future__ import annotations

import copy
import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import boto3
import pytest
from moto import mock_aws
from standardwebhooks import Webhook

from tests.conftest import ROOT
from tests.integration.serve_helpers import FileServer
from tests.lambda_events import api_event, functions_on
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.sns_notifier import SnsNotifier
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.api.auth import hash_key
from video_ai.domain.errors import IndexUnavailable, InvalidTransition
from video_ai.domain.models import FramePoint, Job, JobStatus, ModelInfo, SearchFilter
from video_ai.domain.ports import VectorIndex
from video_ai.local.functions import lambda_context
from video_ai.local.pollers import SqsPoller
from video_ai.local.resources import create_resources
from video_ai.runtime import Runtime, Secrets
from video_ai.samples import make_clip
from video_ai.settings import Settings

API_KEY = "faults-key"
CLIP_FRAMES = 4  # 4 s at 1 fps; batch size 2 -> two upserts per job


class _Killed(BaseException):
    """The worker process dying mid-job: not an Exception, so nothing on the way up handles it."""


class FlakyIndex:
    """A VectorIndex that fails chosen upsert calls (1-based, counted across the whole test) and passes the rest on."""

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.calls = 0
        self.fail_calls: set[int] = set()
        self.kill_calls: set[int] = set()

    def plan(self, fail: Sequence[int] = (), kill: Sequence[int] = ()) -> None:
        self.calls, self.fail_calls, self.kill_calls = 0, set(fail), set(kill)

    def upsert(self, model: ModelInfo, points: Sequence[FramePoint]) -> None:
        self.calls += 1
        if self.calls in self.kill_calls:
            raise _Killed()
        if self.calls in self.fail_calls:
            raise IndexUnavailable(f"qdrant is unavailable (injected, upsert #{self.calls})")
        self.inner.upsert(model, points)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class DyingNotifier(SnsNotifier):
    """Publishes to SNS as deployed, but the worker can die on a planned publish: before it (the end is recorded, the
    notification not sent) or right after it (sent, but not yet marked as sent)."""

    def __init__(self, topic_arn: str, clients: AwsClients) -> None:
        super().__init__(topic_arn, clients)
        self.die: Literal["before", "after"] | None = None

    def job_finished(self, job: Job, replay: bool = False) -> None:
        die, self.die = self.die, None
        if die == "before":
            raise _Killed()
        super().job_finished(job, replay)
        if die == "after":
            raise _Killed()


class FaultyRuntime(Runtime):
    """The process runtime with the index wrapped in a FlakyIndex and a notifier that can die on a publish."""

    def index(self) -> VectorIndex:
        return self._once("flaky-index", lambda: FlakyIndex(super(FaultyRuntime, self).index()))

    def notifier(self) -> DyingNotifier:
        return self._once("dying-notifier", lambda: DyingNotifier(self._required(self.settings.aws.topic_arn,
                                                                                  "topic_arn"), self.clients))

    def flaky(self) -> FlakyIndex:
        index = self.index()
        assert isinstance(index, FlakyIndex)
        return index


@dataclass
class Hook:
    """A callback receiver that can be down (nothing listening on its port) or up."""

    port: int
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Chain:
    runtime: FaultyRuntime
    fn: dict[str, ModuleType]
    resources: Any
    session: boto3.session.Session
    video_url: str
    secret: str
    tap: str  # an SQS queue subscribed to the "job finished" topic


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _atomic_dynamodb_writes() -> Iterator[None]:
    """DynamoDB applies a conditional write to an item atomically; moto's in-process backend does not (two threads
    moving one job PROCESSING -> SUCCEEDED both won 7 times in 30 here). Serialise its writes as DynamoDB does."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        for name in ("put_item", "update_item", "delete_item"):
            patch.setattr(DynamoDBBackend, name, locked(getattr(DynamoDBBackend, name)))
        yield


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Chain]:
    media = tmp_path_factory.mktemp("fault-media")
    make_clip(media / "clip.mp4", duration_s=float(CLIP_FRAMES), fps=10.0, size=(160, 120), shots=[2.0])
    files = FileServer(media)
    secret = generate_secret()
    with mock_aws(), _atomic_dynamodb_writes():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, ROOT / "template.yaml", stage="faults")
        settings = Settings.model_validate({
            "data_dir": str(tmp_path_factory.mktemp("fault-data")),
            "model": {"path": str(model_path), "batch_size": 2},
            "webhook": {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
            "api": {"api_key_hashes": {hash_key(API_KEY): "t1"}},
            "aws": {"region": "us-east-1", **resources.aws_settings()},
        }).development()
        runtime = FaultyRuntime(settings, secrets=Secrets(webhook=[secret]),
                                clients=AwsClients("us-east-1", session=session))
        sqs, sns = session.client("sqs"), session.client("sns")
        tap = sqs.create_queue(QueueName="finished-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=resources.topic_arn, Protocol="sqs", Endpoint=tap_arn)
        try:
            with functions_on(runtime) as fn:
                yield Chain(runtime, fn, resources, session, files.url("clip.mp4"), secret, tap)
        finally:
            runtime.close()
            files.close()


# ---------------------------------------------------------------- moto's server restarted (runs first: no mock_aws yet)


def test_moto_server_down_then_restarted_api_answers_and_new_jobs_work() -> None:
    """What `serve` sees if its moto server stops and starts again on the same port.

    `serve` has no hook to restart moto, so this drives the same parts in-process: moto's ThreadedMotoServer, the
    AWS adapters pointed at it, the API app. While moto is down the API answers 503 `transient_error` at once (no
    hang); once it is back the jobs are still there (moto keeps its state in the process, not in the server
    object; a restart of `serve` itself loses them, as the README says) and new jobs are accepted.
    """
    from fastapi.testclient import TestClient
    from moto.server import ThreadedMotoServer

    from video_ai.api.app import create_app

    first = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    first.start()
    host, port = first.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    clients = AwsClients("us-east-1", endpoint_url=endpoint)
    resources = create_resources(clients, ROOT / "template.yaml", "restart")
    settings = Settings.model_validate({
        "api": {"api_key_hashes": {hash_key(API_KEY): "t1"}},
        "aws": {"endpoint_url": endpoint, "jobs_table": resources.table_name,
                "jobs_queue_url": resources.jobs_queue_url, "topic_arn": resources.topic_arn},
    }).development()
    runtime = Runtime(settings, secrets=Secrets(webhook=[generate_secret()]), clients=clients)
    client = TestClient(create_app(runtime.api_context()), raise_server_exceptions=False)
    headers = {"x-api-key": API_KEY}
    body = {"video_url": "http://127.0.0.1:8080/v.mp4"}
    second: ThreadedMotoServer | None = None
    try:
        before = client.post("/analyze", json=body, headers=headers)
        assert before.status_code == 202, before.text
        first.stop()
        started = time.monotonic()
        down = client.post("/analyze", json=body, headers=headers)
        assert down.status_code == 503 and down.json()["error"]["code"] == "transient_error", down.text
        assert time.monotonic() - started < 10
        assert client.get("/health").status_code == 200
        second = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        second.start()
        assert client.get(f"/jobs/{before.json()['job_id']}", headers=headers).json()["status"] == "queued"
        after = client.post("/analyze", json=body, headers=headers)
        assert after.status_code == 202, after.text
        messages = clients.sqs.receive_message(QueueUrl=resources.jobs_queue_url, MaxNumberOfMessages=10)
        assert {json.loads(m["Body"])["job_id"] for m in messages.get("Messages", [])} == {
            before.json()["job_id"], after.json()["job_id"]}
    finally:
        client.close()
        if second is not None:
            second.stop()


# ---------------------------------------------------------------- helpers


def _api(chain: Chain, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = chain.fn["api"].handler(api_event(method, path, body, API_KEY), lambda_context("api"))
    return int(response["statusCode"]), json.loads(response["body"]) if response.get("body") else None


def _submit(chain: Chain, fps: float, callback_url: str | None = None) -> str:
    """A new job; a distinct fps per test keeps jobs from reusing another job's vectors (same bytes)."""
    body: dict[str, Any] = {"video_url": chain.video_url, "sampling": {"fps": fps}}
    if callback_url:
        body["callback_url"] = callback_url
    status, answer = _api(chain, "POST", "/analyze", body)
    assert status == 202, answer
    return str(answer["job_id"])


def _job(chain: Chain, job_id: str) -> dict[str, Any]:
    status, job = _api(chain, "GET", f"/jobs/{job_id}")
    assert status == 200, job
    return dict(job)


def _points(chain: Chain, job_id: str) -> int:
    return chain.runtime.index().count(chain.runtime.embedder().info, SearchFilter(job_id=job_id))


def _poller(chain: Chain, handler: Callable[[dict[str, Any], Any], Any] | None = None) -> SqsPoller:
    return SqsPoller("test-worker", chain.session.client("sqs"), chain.resources.jobs_queue_url,
                     handler or chain.fn["worker"].handler, lambda: lambda_context("worker"), threading.Event(),
                     retry_visibility_s=0)


def _drain(poller: SqsPoller, rounds: int = 12) -> int:
    """Receive and dispatch until the queue stays empty twice in a row; bounded. Returns the invocations made."""
    invocations = empty = 0
    for _ in range(rounds):
        messages = poller.sqs.receive_message(QueueUrl=poller.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=0,
                                              AttributeNames=["All"]).get("Messages", [])
        if not messages:
            empty += 1
            if empty >= 2:
                break
            time.sleep(0.2)
            continue
        empty = 0
        invocations += 1
        poller.dispatch([dict(m) for m in messages])
    return invocations


def _finished_messages(chain: Chain, job_id: str) -> list[dict[str, Any]]:
    """Every "job finished" notification for `job_id` on the tap queue (consumed)."""
    sqs = chain.session.client("sqs")
    found: list[dict[str, Any]] = []
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=chain.tap, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        for message in got:
            envelope = json.loads(message["Body"])
            if json.loads(envelope["Message"]).get("job_id") == job_id:
                found.append(envelope)
            sqs.delete_message(QueueUrl=chain.tap, ReceiptHandle=message["ReceiptHandle"])
    return found


def _sns_event(envelope: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "sns_job_finished.json").read_text())
    event["Records"][0]["Sns"]["Message"] = envelope["Message"]
    event["Records"][0]["Sns"]["MessageId"] = envelope["MessageId"]
    return event


def _dlq_bodies(chain: Chain) -> list[str]:
    sqs = chain.session.client("sqs")
    dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "jobs-dead-letter" in u)
    got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0)
    return [m["Body"] for m in got.get("Messages", [])]


# ---------------------------------------------------------------- Qdrant unavailable mid-job


def test_index_down_on_every_attempt_retries_three_times_then_dlq_and_failed(chain: Chain) -> None:
    job_id = _submit(chain, fps=1.0)
    _finished_messages(chain, "")  # start from an empty tap
    # Each attempt: the first batch lands, the second upsert fails (Qdrant went away mid-job).
    chain.runtime.flaky().plan(fail=[2, 4, 6])
    invocations = _drain(_poller(chain))
    assert invocations == 3  # maxReceiveCount 3: then the queue moves the message to the DLQ
    job = _job(chain, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted", job
    assert "index_unavailable" in job["error"]["message"]
    assert any(job_id in body for body in _dlq_bodies(chain))
    assert [json.loads(e["Message"])["type"] for e in _finished_messages(chain, job_id)] == ["job.failed"]


def test_index_down_once_then_back_leaves_one_set_of_points(chain: Chain) -> None:
    job_id = _submit(chain, fps=2.0)
    chain.runtime.flaky().plan(fail=[2])
    assert _drain(_poller(chain)) == 2  # failed once, succeeded on the redelivery
    job = _job(chain, job_id)
    assert job["status"] == "succeeded", job
    # The first attempt's batch was written again under the same deterministic ids: no duplicates.
    assert job["frames_indexed"] == 2 * CLIP_FRAMES == _points(chain, job_id)
    assert len(_finished_messages(chain, job_id)) == 1


# ---------------------------------------------------------------- DynamoDB conditional conflicts


def test_two_workers_on_the_same_message_make_one_result(chain: Chain) -> None:
    job_id = _submit(chain, fps=0.5)
    chain.runtime.flaky().plan()
    sqs = chain.session.client("sqs")
    message = sqs.receive_message(QueueUrl=chain.resources.jobs_queue_url, AttributeNames=["All"],
                                  WaitTimeSeconds=0)["Messages"][0]
    poller = _poller(chain)
    event = {"Records": [_record(poller, message)]}
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        barrier.wait(5)
        try:
            results.append(chain.fn["worker"].handler(copy.deepcopy(event), lambda_context("worker")))
        except Exception as err:  # the loser's record failed (powertools: every record failed): SQS redelivers
            results.append(type(err).__name__)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and {"batchItemFailures": []} in results, results
    job = _job(chain, job_id)
    assert job["status"] == "succeeded" and job["frames_indexed"] == _points(chain, job_id) == 2, job
    finished = _finished_messages(chain, job_id)
    assert len(finished) == 1  # one "job finished", whoever won
    # The conditional write itself: a finished job cannot be moved back or finished twice.
    with pytest.raises(InvalidTransition):
        chain.runtime.jobs().transition(job_id, JobStatus.PROCESSING)
    with pytest.raises(InvalidTransition):
        chain.runtime.jobs().transition(job_id, JobStatus.SUCCEEDED)
    sqs.delete_message(QueueUrl=chain.resources.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"])
    # The loser's redelivery finds the job finished: nothing more happens.
    chain.fn["worker"].handler(copy.deepcopy(event), lambda_context("worker"))
    assert _finished_messages(chain, job_id) == [] and _points(chain, job_id) == 2


def _record(poller: SqsPoller, message: Mapping[str, Any]) -> dict[str, Any]:
    from video_ai.local.pollers import sqs_lambda_record

    return sqs_lambda_record(dict(message), poller.source_arn, "us-east-1")


# ---------------------------------------------------------------- the same message three times


def test_the_same_message_three_times_gives_one_set_of_vectors_and_one_callback(chain: Chain) -> None:
    hook = Hook(_free_port())
    hook.up()
    try:
        job_id = _submit(chain, fps=4.0, callback_url=hook.url)
        chain.runtime.flaky().plan()
        sqs = chain.session.client("sqs")
        message = sqs.receive_message(QueueUrl=chain.resources.jobs_queue_url, AttributeNames=["All"],
                                      WaitTimeSeconds=0)["Messages"][0]
        event = {"Records": [_record(_poller(chain), message)]}
        for _ in range(3):
            assert chain.fn["worker"].handler(copy.deepcopy(event), lambda_context("worker")) == {
                "batchItemFailures": []}
        job = _job(chain, job_id)
        assert job["status"] == "succeeded" and job["frames_indexed"] == _points(chain, job_id) == 4 * CLIP_FRAMES
        finished = _finished_messages(chain, job_id)
        assert len(finished) == 1
        # SNS is at-least-once too: the callback function gets the same notification three times.
        for _ in range(3):
            chain.fn["callback"].handler(_sns_event(finished[0]), lambda_context("callback"))
        assert len(hook.deliveries) == 1
        headers, raw = hook.deliveries[0]
        assert Webhook(chain.secret).verify(raw, headers)["job_id"] == job_id
    finally:
        hook.down()


# ---------------------------------------------------------------- callback receiver down, then up; replay


def test_callback_receiver_down_then_up_then_replay(chain: Chain) -> None:
    hook = Hook(_free_port())  # nothing listens there yet
    job_id = _submit(chain, fps=3.0, callback_url=hook.url)
    chain.runtime.flaky().plan()
    assert _drain(_poller(chain)) == 1
    finished = _finished_messages(chain, job_id)
    assert len(finished) == 1
    event = _sns_event(finished[0])
    with pytest.raises(Exception, match="callback"):  # Lambda's async retry (and then the DLQ) take over
        chain.fn["callback"].handler(copy.deepcopy(event), lambda_context("callback"))
    state = _job(chain, job_id)["callback"]
    assert state["status"] != "delivered" and state["attempts"] == 2 and state["last_error"], state
    hook.up()
    try:
        chain.fn["callback"].handler(copy.deepcopy(event), lambda_context("callback"))  # Lambda's retry
        assert len(hook.deliveries) == 1
        state = _job(chain, job_id)["callback"]
        assert state["status"] == "delivered" and state["attempts"] == 3, state
        # Replay: POST /jobs/{id}/callback publishes the record as it is now (callback state and updated_at have
        # moved on); the callback function sends the first delivery's body again under the same id.
        status, _ = _api(chain, "POST", f"/jobs/{job_id}/callback")
        assert status == 202
        replayed = _finished_messages(chain, job_id)
        assert len(replayed) == 1 and json.loads(replayed[0]["Message"]).get("replay") is True
        assert json.loads(replayed[0]["Message"])["data"] != json.loads(finished[0]["Message"])["data"]
        chain.fn["callback"].handler(_sns_event(replayed[0]), lambda_context("callback"))
        assert len(hook.deliveries) == 2
        ids = {headers["webhook-id"] for headers, _ in hook.deliveries}
        assert len(ids) == 1
        assert hook.deliveries[1][1] == hook.deliveries[0][1]
        for headers, raw in hook.deliveries:
            assert Webhook(chain.secret).verify(raw, headers)["type"] == "job.succeeded"
    finally:
        hook.down()


# ---------------------------------------------------------------- worker killed mid-job


def test_worker_killed_mid_job_the_message_returns_and_the_job_completes(chain: Chain) -> None:
    job_id = _submit(chain, fps=5.0)
    chain.runtime.flaky().plan(kill=[1])
    sqs = chain.session.client("sqs")
    # Lambda's poller takes the message for the visibility timeout (shortened to 1 s here), then the worker dies.
    message = sqs.receive_message(QueueUrl=chain.resources.jobs_queue_url, AttributeNames=["All"],
                                  WaitTimeSeconds=0, VisibilityTimeout=1)["Messages"][0]
    poller = _poller(chain)
    with pytest.raises(_Killed):
        chain.fn["worker"].handler({"Records": [_record(poller, message)]}, lambda_context("worker"))
    assert _job(chain, job_id)["status"] == "processing"  # abandoned mid-job; nothing deleted the message
    # The message reappears once its visibility timeout ends; on a loaded machine that can take a little longer.
    deadline = time.monotonic() + 15
    invocations = 0
    while invocations == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        invocations = _drain(poller)
    assert invocations == 1
    job = _job(chain, job_id)
    assert job["status"] == "succeeded" and job["frames_indexed"] == _points(chain, job_id) == 5 * CLIP_FRAMES, job
    assert len(_finished_messages(chain, job_id)) == 1


# ---------------------------------------------------------------- worker killed between the end and its notification


@pytest.mark.parametrize("die", ["before", "after"])
def test_worker_killed_between_recording_the_end_and_publishing_it_the_callback_arrives_once(
        chain: Chain, die: Literal["before", "after"]) -> None:
    """The end is a DynamoDB write and the notification an SNS publish, with no transaction between them. Killed
    before the publish, the redelivered message publishes it; killed after it (the outbox mark not yet written), the
    redelivery publishes it again, with the same body, and the callback still reaches the receiver once."""
    hook = Hook(_free_port())
    hook.up()
    try:
        job_id = _submit(chain, fps={"before": 1.5, "after": 2.5}[die], callback_url=hook.url)
        chain.runtime.flaky().plan()
        chain.runtime.notifier().die = die
        _finished_messages(chain, "")  # start from an empty tap
        sqs = chain.session.client("sqs")
        message = sqs.receive_message(QueueUrl=chain.resources.jobs_queue_url, AttributeNames=["All"],
                                      WaitTimeSeconds=0, VisibilityTimeout=1)["Messages"][0]
        poller = _poller(chain)
        with pytest.raises(_Killed):
            chain.fn["worker"].handler({"Records": [_record(poller, message)]}, lambda_context("worker"))
        recorded = chain.runtime.jobs().get(job_id)
        assert recorded is not None and recorded.status is JobStatus.SUCCEEDED and recorded.announced_at is None
        published = _finished_messages(chain, job_id)
        assert len(published) == {"before": 0, "after": 1}[die]

        # Lambda's poller gets the message again once its visibility timeout (1 s here) ends.
        deadline = time.monotonic() + 15
        invocations = 0
        while invocations == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            invocations = _drain(poller)
        assert invocations == 1
        published += _finished_messages(chain, job_id)
        assert len(published) == {"before": 1, "after": 2}[die]
        assert len({e["Message"] for e in published}) == 1  # one body, whoever published it
        stored = chain.runtime.jobs().get(job_id)
        assert stored is not None and stored.announced_at is not None
        assert _job(chain, job_id)["frames_indexed"] == _points(chain, job_id) == recorded.frames_indexed > 0

        # SNS delivers each publish (at least once) to the callback function: one delivery reaches the receiver.
        for envelope in published + published:
            chain.fn["callback"].handler(_sns_event(envelope), lambda_context("callback"))
        assert len(hook.deliveries) == 1
        headers, raw = hook.deliveries[0]
        delivered = Webhook(chain.secret).verify(raw, headers)
        assert delivered["type"] == "job.succeeded" and delivered["job_id"] == job_id
        assert _job(chain, job_id)["callback"]["status"] == "delivered"
        # A further redelivery finds the job announced: nothing is published.
        chain.runtime.queue().send({"job_id": job_id, "tenant": "t1"})
        assert _drain(poller) == 1 and _finished_messages(chain, job_id) == []
    finally:
        hook.down()
