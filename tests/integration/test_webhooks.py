"""Signed callbacks to a loopback receiver, verified with the PyPI `standardwebhooks` library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.fixtures.hostile_urls import FakeResolver
from tests.loopback import running
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.webhook_sender import WebhookSender, generate_secret, parse_retry_after, sign
from video_ai.domain.errors import ConfigError, ForbiddenAddress
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.services.deliver_callback import CallbackFailed, deliver_callback, webhook_id
from video_ai.settings import LimitsSettings, NetworkSettings, WebhookSettings

SETTINGS = WebhookSettings(timeout_s=2, max_attempts=5, backoff_base_s=0.2, backoff_max_s=5)
NETWORK = NetworkSettings(allow_http=True)  # deployed address policy; the receiver is exempted by (ip, port)
HANG_S = 5.0


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.script: list[tuple[int, dict[str, str]]] = []
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status, headers = self.server.script.pop(0) if self.server.script else (200, {})
        if status == 0:  # hang past the sender's timeout (bounded)
            self.server.release.wait(HANG_S)
            status = 200
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


@pytest.fixture(scope="module")
def secret() -> str:
    return generate_secret()


def _sender(receiver: Receiver, secrets: list[str], **kw: Any) -> WebhookSender:
    return WebhookSender(secrets, SETTINGS, NETWORK, LimitsSettings(connect_timeout_s=1),
                         FakeResolver({"hooks.test": ["127.0.0.1"]}),
                         exempt_endpoints={("127.0.0.1", receiver.port)}, **kw)


def _job(repo: InMemoryJobRepository, receiver: Receiver) -> Job:
    job = Job(job_id="job-42", source=Source(url="https://videos.example/a.mp4"), status=JobStatus.SUCCEEDED,
              callback_url=f"http://hooks.test:{receiver.port}/video-ai", frames_indexed=12)
    repo.create(job)
    return job


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)  # recorded, not slept: the test stays fast


def _deliver(job: Job, repo: InMemoryJobRepository, sender: WebhookSender, sleep: RecordingSleep, **kw: Any) -> Any:
    return deliver_callback(job, "job.succeeded", jobs=repo, sender=sender, settings=SETTINGS, sleep=sleep,
                            deadline_s=60.0, **kw)


def test_500_500_200_gives_exactly_three_verified_deliveries_with_rising_delays(
    receiver: Receiver, secret: str
) -> None:
    receiver.script = [(500, {}), (500, {}), (200, {})]
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    job = _job(repo, receiver)
    state = _deliver(job, repo, _sender(receiver, [secret]), sleep)
    assert len(receiver.deliveries) == 3
    assert sleep.delays[0] < sleep.delays[1] and len(sleep.delays) == 2
    ids = {headers["webhook-id"] for headers, _ in receiver.deliveries}
    assert ids == {webhook_id("job-42", "job.succeeded", job.created_at)}
    for headers, body in receiver.deliveries:
        event = Webhook(secret).verify(body, headers)
        assert event["type"] == "job.succeeded" and event["job_id"] == "job-42"
        assert event["data"]["frames_indexed"] == 12 and event["data"]["status"] == "succeeded"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("video-ai/")
        assert headers["host"] == f"hooks.test:{receiver.port}"  # pinned to 127.0.0.1, original Host kept
        assert b": " not in body and b", " not in body  # compact JSON
    stored = repo.get("job-42")
    assert stored is not None and stored.callback == state
    assert (state.status, state.attempts, state.last_status) == ("delivered", 3, 200)


def test_410_stops_and_later_deliveries_skip_the_url(receiver: Receiver, secret: str) -> None:
    receiver.script = [(410, {})]
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    job = _job(repo, receiver)
    sender = _sender(receiver, [secret])
    assert _deliver(job, repo, sender, sleep).status == "gone"
    assert _deliver(job, repo, sender, sleep).status == "gone"
    assert _deliver(job, repo, sender, sleep, replay=True).status == "gone"
    assert len(receiver.deliveries) == 1 and sleep.delays == []


def test_replay_delivers_again_with_the_same_webhook_id(receiver: Receiver, secret: str) -> None:
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    job = _job(repo, receiver)
    sender = _sender(receiver, [secret])
    _deliver(job, repo, sender, sleep)
    _deliver(job, repo, sender, sleep)  # already delivered: nothing sent
    _deliver(job, repo, sender, sleep, replay=True)
    assert len(receiver.deliveries) == 2
    first, second = receiver.deliveries
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]
    for headers, body in receiver.deliveries:
        Webhook(secret).verify(body, headers)


def test_a_replay_of_a_changed_record_resends_the_first_body_newly_signed(receiver: Receiver, secret: str) -> None:
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    start = int(time.time()) - 60  # the replay a minute after the first delivery (both within the spec's tolerance)
    clock = iter([float(start), float(start + 60)])
    sender = _sender(receiver, [secret], clock=lambda: next(clock))
    _deliver(_job(repo, receiver), repo, sender, sleep)
    repo.update("job-42", tags={"changed": "after the first delivery"})
    now = repo.get("job-42")
    assert now is not None
    _deliver(now, repo, sender, sleep, replay=True)  # what the replay route hands on: the record as it is now
    (first_headers, first), (second_headers, second) = receiver.deliveries
    assert second == first and second_headers["webhook-id"] == first_headers["webhook-id"]
    assert (first_headers["webhook-timestamp"], second_headers["webhook-timestamp"]) == (str(start), str(start + 60))
    assert second_headers["webhook-signature"] != first_headers["webhook-signature"]
    for headers, body in receiver.deliveries:
        assert Webhook(secret).verify(body, headers)["data"]["tags"] == {}


def test_retry_after_is_honoured(receiver: Receiver, secret: str) -> None:
    receiver.script = [(429, {"Retry-After": "3"}), (200, {})]
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    assert _deliver(_job(repo, receiver), repo, _sender(receiver, [secret]), sleep).status == "delivered"
    assert sleep.delays == [3.0]


def test_persistent_5xx_raises_a_transient_error_for_lambda_to_retry(receiver: Receiver, secret: str) -> None:
    receiver.script = [(503, {})] * SETTINGS.max_attempts
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    with pytest.raises(CallbackFailed):
        _deliver(_job(repo, receiver), repo, _sender(receiver, [secret]), sleep)
    assert len(receiver.deliveries) == SETTINGS.max_attempts


def test_a_tampered_body_or_a_stale_timestamp_fails_verification(receiver: Receiver, secret: str) -> None:
    sender = _sender(receiver, [secret])
    assert sender.send(f"http://hooks.test:{receiver.port}/", b'{"type":"t","n":1}', "msg_1").status_code == 200
    headers, body = receiver.deliveries[-1]
    Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b'"n":1', b'"n":2'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)

    stale = _sender(receiver, [secret], clock=lambda: time.time() - 600)
    stale.send(f"http://hooks.test:{receiver.port}/", b'{"type":"t"}', "msg_2")
    old_headers, old_body = receiver.deliveries[-1]
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(old_body, old_headers)


def test_two_secrets_send_two_signatures_each_verifying(receiver: Receiver) -> None:
    old, new = generate_secret(), generate_secret()
    _sender(receiver, [old, new]).send(f"http://hooks.test:{receiver.port}/", b'{"type":"t"}', "msg_rot")
    headers, body = receiver.deliveries[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == {"type": "t"}
    assert Webhook(new).verify(body, headers) == {"type": "t"}


def test_sign_matches_the_spec_computed_by_hand() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    body = '{"a":"é"}'.encode()
    expected = base64.b64encode(hmac.new(key, b"msg_x.1700000000." + body, hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_x", 1_700_000_000, body) == f"v1,{expected}"


def test_forbidden_callback_urls_are_refused_at_send_time(receiver: Receiver, secret: str) -> None:
    sender = _sender(receiver, [secret])
    for url in ("http://169.254.169.254/latest/meta-data/", f"http://127.0.0.1:{receiver.port + 1}/",
                "http://[::ffff:10.0.0.1]/"):
        with pytest.raises(ForbiddenAddress):
            sender.send(url, b'{"type":"t"}', "msg_f")
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    job = Job(job_id="job-ssrf", source=Source(url="https://v.example/a.mp4"), status=JobStatus.FAILED,
              callback_url="http://2852039166/")
    repo.create(job)
    state = deliver_callback(job, "job.failed", jobs=repo, sender=sender, settings=SETTINGS, sleep=sleep)
    assert (state.status, state.last_error) == ("failed", "forbidden_address")
    assert receiver.deliveries == []


def test_redirects_are_not_followed(receiver: Receiver, secret: str) -> None:
    receiver.script = [(302, {"Location": "http://169.254.169.254/"})]
    result = _sender(receiver, [secret]).send(f"http://hooks.test:{receiver.port}/", b'{"type":"t"}', "msg_r")
    assert result.status_code == 302 and len(receiver.deliveries) == 1


@pytest.mark.timeout(20)
def test_a_hanging_receiver_times_out_as_a_retryable_result(receiver: Receiver, secret: str) -> None:
    receiver.script = [(0, {})]
    fast = WebhookSettings(timeout_s=0.3)
    sender = WebhookSender([secret], fast, NETWORK, LimitsSettings(), FakeResolver({"hooks.test": ["127.0.0.1"]}),
                           exempt_endpoints={("127.0.0.1", receiver.port)})
    started = time.monotonic()
    result = sender.send(f"http://hooks.test:{receiver.port}/", b'{"type":"t"}', "msg_t")
    assert result.status_code is None and result.error is not None and "timeout" in result.error
    assert time.monotonic() - started < 3


def test_unreachable_receiver_is_a_retryable_result(secret: str) -> None:
    sender = WebhookSender([secret], SETTINGS, NETWORK, LimitsSettings(connect_timeout_s=1),
                           FakeResolver({"hooks.test": ["127.0.0.1"]}), exempt_endpoints={("127.0.0.1", 9)})
    result = sender.send("http://hooks.test:9/", b'{"type":"t"}', "msg_u")
    assert result.status_code is None and result.error


def test_secrets_are_validated_and_generated_in_whsec_form() -> None:
    made = generate_secret()
    assert made.startswith("whsec_") and len(base64.b64decode(made[6:])) == 32
    for bad in ([], ["not-a-secret"], ["whsec_%%%"], ["whsec_" + base64.b64encode(b"short").decode()]):
        with pytest.raises(ConfigError):
            WebhookSender(bad, SETTINGS, NETWORK, LimitsSettings())


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20 GMT", now) == pytest.approx(60.0)  # now is 22:13:20
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_payload_json_round_trips(receiver: Receiver, secret: str) -> None:
    repo, sleep = InMemoryJobRepository(), RecordingSleep()
    job = _job(repo, receiver)
    _deliver(job, repo, _sender(receiver, [secret]), sleep)
    payload = json.loads(receiver.deliveries[0][1])
    assert set(payload) == {"type", "job_id", "timestamp", "data"}
    assert payload["data"] == job.public()
