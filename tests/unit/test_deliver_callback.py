"""Callback delivery policy over a scripted sender and the in-memory job repository (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.errors import FetchFailed, ForbiddenAddress
from video_ai.domain.models import ErrorInfo, Job, JobStatus, Source
from video_ai.services.deliver_callback import (
    MAX_PAYLOAD_BYTES,
    CallbackFailed,
    DeliveryResult,
    budget_from_remaining_ms,
    build_payload,
    deliver_callback,
    webhook_id,
)
from video_ai.settings import WebhookSettings

SETTINGS = WebhookSettings(timeout_s=10, max_attempts=5, backoff_base_s=0.5, backoff_max_s=30)
URL = "https://hooks.example/video-ai"


class ScriptedSender:
    """Answers from a script (a DeliveryResult or an exception per attempt) and records every send."""

    def __init__(self, *script: DeliveryResult | int | Exception) -> None:
        self.script = list(script)
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.bodies: list[bytes] = []

    def send(self, url: str, body: bytes, msg_id: str) -> DeliveryResult:
        self.sent.append((url, json.loads(body), msg_id))
        self.bodies.append(body)
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, Exception):
            raise step
        return step if isinstance(step, DeliveryResult) else DeliveryResult(status_code=step)


class Clock:
    """A monotonic clock that only moves when the fake sleep is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def _job(repo: InMemoryJobRepository, callback_url: str | None = URL, **extra: Any) -> Job:
    job = Job(job_id="job-1", source=Source(url="https://videos.example/a.mp4"), callback_url=callback_url,
              status=JobStatus.SUCCEEDED, **extra)
    repo.create(job)
    return job


def _deliver(job: Job, repo: InMemoryJobRepository, sender: ScriptedSender, clock: Clock, **kw: Any) -> Any:
    kw.setdefault("settings", SETTINGS)
    return deliver_callback(job, "job.succeeded", jobs=repo, sender=sender, sleep=clock.sleep,
                            monotonic=clock.monotonic, rng=lambda: 0.5, **kw)


def test_no_callback_url_is_a_no_op() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(), Clock()
    assert _deliver(_job(repo, callback_url=None), repo, sender, clock) is None
    assert sender.sent == []
    assert repo.get("job-1").callback is None  # type: ignore[union-attr]


def test_first_try_success_is_recorded_on_the_job() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(200), Clock()
    state = _deliver(_job(repo), repo, sender, clock)
    assert (state.status, state.attempts, state.last_status, state.last_error) == ("delivered", 1, 200, None)
    assert state.delivered_at is not None
    assert repo.get("job-1").callback == state  # type: ignore[union-attr]
    url, payload, msg_id = sender.sent[0]
    assert url == URL and msg_id == webhook_id("job-1", "job.succeeded", payload["data"]["created_at"])
    assert payload["type"] == "job.succeeded" and payload["job_id"] == "job-1"
    assert payload["data"]["status"] == "succeeded" and payload["data"]["job_id"] == "job-1"
    assert clock.sleeps == []


def test_500_500_200_means_three_attempts_with_rising_delays_and_one_webhook_id() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(500, 500, 200), Clock()
    state = _deliver(_job(repo), repo, sender, clock)
    assert (state.status, state.attempts, state.last_status) == ("delivered", 3, 200)
    assert len(sender.sent) == 3
    assert len({msg_id for _, _, msg_id in sender.sent}) == 1
    assert len(clock.sleeps) == 2 and clock.sleeps[0] < clock.sleeps[1]


@pytest.mark.parametrize("rng_value", [0.0, 0.999])
def test_backoff_keeps_rising_whatever_the_jitter(rng_value: float) -> None:
    repo, clock = InMemoryJobRepository(), Clock()
    sender = ScriptedSender(503, 503, 503, 503, 200)
    deliver_callback(_job(repo), "job.succeeded", jobs=repo, sender=sender, settings=SETTINGS, sleep=clock.sleep,
                     monotonic=clock.monotonic, rng=lambda: rng_value)
    assert clock.sleeps == sorted(clock.sleeps)
    for attempt, delay in enumerate(clock.sleeps):
        step = min(SETTINGS.backoff_max_s, SETTINGS.backoff_base_s * 2**attempt)
        assert step / 2 <= delay <= step


@pytest.mark.parametrize("failure", [408, 429, 502, DeliveryResult(None, error="timeout: ReadTimeout"),
                                     FetchFailed("cannot resolve")])
def test_retryable_failures_are_retried(failure: DeliveryResult | int | Exception) -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(failure, 200), Clock()
    state = _deliver(_job(repo), repo, sender, clock)
    assert (state.status, state.attempts) == ("delivered", 2)


def test_retry_after_is_honoured_and_capped() -> None:
    repo, clock = InMemoryJobRepository(), Clock()
    sender = ScriptedSender(DeliveryResult(429, retry_after_s=7), DeliveryResult(503, retry_after_s=3600), 200)
    _deliver(_job(repo), repo, sender, clock)
    assert clock.sleeps == [7, SETTINGS.backoff_max_s]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 302])
def test_other_non_2xx_are_permanent_without_raising(status: int) -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(status, 200), Clock()
    state = _deliver(_job(repo), repo, sender, clock)
    assert (state.status, state.attempts, state.last_status, state.last_error) == (
        "failed", 1, status, f"http {status}")
    assert len(sender.sent) == 1


def test_gone_stops_this_and_every_later_delivery_even_a_replay() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(410), Clock()
    job = _job(repo)
    state = _deliver(job, repo, sender, clock)
    assert (state.status, state.last_status) == ("gone", 410)
    assert _deliver(job, repo, sender, clock).status == "gone"
    assert _deliver(job, repo, sender, clock, replay=True).status == "gone"
    assert len(sender.sent) == 1


def test_exhausted_attempts_raise_a_transient_error_and_record_failed() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(*[500] * 10), Clock()
    with pytest.raises(CallbackFailed) as caught:
        _deliver(_job(repo), repo, sender, clock)
    assert caught.value.permanent is False and caught.value.code == "callback_failed"
    assert len(sender.sent) == SETTINGS.max_attempts
    stored = repo.get("job-1").callback  # type: ignore[union-attr]
    assert stored is not None
    assert (stored.status, stored.attempts, stored.last_status) == ("failed", SETTINGS.max_attempts, 500)


def test_a_lambda_retry_continues_the_attempt_count() -> None:
    repo, clock = InMemoryJobRepository(), Clock()
    job = _job(repo)
    with pytest.raises(CallbackFailed):
        _deliver(job, repo, ScriptedSender(*[500] * 5), clock)
    state = _deliver(job, repo, ScriptedSender(200), clock)
    assert (state.status, state.attempts) == ("delivered", SETTINGS.max_attempts + 1)


def test_the_time_budget_stops_retries_early() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(*[500] * 10), Clock()
    with pytest.raises(CallbackFailed):
        _deliver(_job(repo), repo, sender, clock, deadline_s=11.0)
    # A wait plus a whole 10 s attempt must fit: 0.375 s + 10 s does, 0.375 + 0.75 + 10 s does not.
    assert len(sender.sent) == 2
    assert clock.sleeps == [0.375]


def test_delivered_is_not_sent_again_unless_replayed_with_the_same_id() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(200, 200), Clock()
    job = _job(repo)
    _deliver(job, repo, sender, clock)
    again = _deliver(job, repo, sender, clock)
    assert again.status == "delivered" and len(sender.sent) == 1
    replayed = _deliver(job, repo, sender, clock, replay=True)
    assert (replayed.status, replayed.attempts) == ("delivered", 2)
    assert [m for _, _, m in sender.sent] == [webhook_id("job-1", "job.succeeded", job.created_at)] * 2


def test_a_replay_sends_the_first_body_though_the_job_record_changed_since() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(200, 200, 200), Clock()
    job = _job(repo)
    _deliver(job, repo, sender, clock)
    # The record moves on (callback state, a tag, a later updated_at); the replay is handed today's record.
    repo.update("job-1", tags={"added": "later"})
    today = repo.get("job-1")
    assert today is not None and today.callback_message is not None
    _deliver(today, repo, sender, clock, replay=True)
    assert sender.bodies[1] == sender.bodies[0] and sender.sent[1][2] == sender.sent[0][2]
    assert sender.sent[1][1]["data"]["tags"] == {}
    # The message is private: not in the job's public record, so not in the callback's data either.
    assert "callback_message" not in today.public() and "callback_message" not in sender.sent[0][1]["data"]


def test_two_deliveries_racing_to_build_the_message_send_the_one_kept_first() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(200, 200), Clock()
    job = _job(repo)
    first = repo.get("job-1")
    assert first is not None
    _deliver(job, repo, sender, clock)  # kept its message while the second delivery was reading the record
    late = job.model_copy(update={"tags": {"seen": "later"}})
    deliver_callback(late, "job.succeeded", jobs=_Stale(repo, first), sender=sender, settings=SETTINGS,
                     sleep=clock.sleep, monotonic=clock.monotonic, replay=True)
    assert sender.bodies[1] == sender.bodies[0]


class _Stale(InMemoryJobRepository):
    """The repository, but `get` returns the record as it was before the other delivery kept its message."""

    def __init__(self, inner: InMemoryJobRepository, stale: Job) -> None:
        super().__init__()
        self._items = inner._items
        self._stale = stale

    def get(self, job_id: str) -> Job | None:
        return self._stale


def test_a_job_id_created_anew_and_ended_again_is_a_new_message() -> None:
    repo, sender, clock = InMemoryJobRepository(), ScriptedSender(200, 200), Clock()
    _deliver(_job(repo, created_at="2026-01-01T00:00:00.000000Z"), repo, sender, clock)
    repo.delete("job-1")  # DELETE /jobs/{id}; the same Idempotency-Key creates the same id again
    _deliver(_job(repo, created_at="2026-01-02T00:00:00.000000Z", frames_indexed=7), repo, sender, clock)
    (_, old, old_id), (_, new, new_id) = sender.sent
    assert old_id != new_id and new["data"]["frames_indexed"] == 7 and old["data"]["frames_indexed"] == 0


def test_a_refused_callback_url_fails_permanently() -> None:
    repo, clock = InMemoryJobRepository(), Clock()
    sender = ScriptedSender(ForbiddenAddress("callback_url: metadata address refused", field="callback_url"))
    state = _deliver(_job(repo), repo, sender, clock)
    assert (state.status, state.attempts, state.last_error) == ("failed", 0, "forbidden_address")
    assert len(sender.sent) == 1


def test_webhook_ids_are_stable_per_job_event() -> None:
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    assert webhook_id("a", "job.succeeded", t0) == webhook_id("a", "job.succeeded", t0)
    ids = {webhook_id("a", "job.succeeded", t0), webhook_id("a", "job.failed", t0),
           webhook_id("b", "job.succeeded", t0), webhook_id("a", "job.succeeded", t1)}
    assert len(ids) == 4
    assert webhook_id("a", "job.failed", t0).startswith("msg_")


def test_payload_stays_under_20_kb_by_summarising_data() -> None:
    repo = InMemoryJobRepository()
    huge_tags = {f"k{i}": "v" * 200 for i in range(200)}
    job = Job(
        job_id="job-2", source=Source(url="https://videos.example/a.mp4"), status=JobStatus.FAILED,
        tags=huge_tags, error=ErrorInfo(code="corrupt_media", message="x" * 50_000))
    payload = build_payload(job, "job.failed")
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    assert size <= MAX_PAYLOAD_BYTES
    assert payload["data"]["truncated"] is True
    assert payload["data"]["status"] == "failed" and payload["data"]["error"]["code"] == "corrupt_media"
    assert "tags" not in payload["data"]
    small = build_payload(_job(repo), "job.succeeded")
    assert small["data"] == repo.get("job-1").public() | {"updated_at": small["data"]["updated_at"]}  # type: ignore[union-attr]
    assert "truncated" not in small["data"]


def test_budget_from_remaining_time_keeps_a_margin() -> None:
    assert budget_from_remaining_ms(30_000, margin_s=3) == 27.0
    assert budget_from_remaining_ms(1_000, margin_s=3) == 0.0
