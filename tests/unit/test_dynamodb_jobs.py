"""DynamoDBJobRepository against moto's in-process DynamoDB (mock_aws: no sockets)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from video_ai.adapters.aws import AwsClients
from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
from video_ai.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    TransientError,
)
from video_ai.domain.models import (
    TRANSITIONS,
    CallbackMessage,
    CallbackState,
    ErrorInfo,
    Job,
    JobStatus,
    ModelInfo,
    S3Location,
    Sampling,
    Shot,
    Source,
    Timings,
    VideoInfo,
)
from video_ai.local.resources import create_jobs_table as create_table_from_template

ROOT = Path(__file__).resolve().parents[2]
TABLE = "video-ai-jobs-table-unit"  # the template's default name for JobsTable at stage "unit"
REGION = "us-east-1"


def create_jobs_table(clients: AwsClients) -> str:
    """The table exactly as template.yaml declares it (key, GSIs, TTL): tests and infrastructure cannot drift."""
    name = create_table_from_template(clients, ROOT / "template.yaml", stage="unit")
    assert name == TABLE
    return name


@pytest.fixture(scope="module")
def boto_session() -> boto3.session.Session:
    """One session for the module: it caches loaded service models, which a fresh session reloads (~0.4 s)."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch, boto_session: boto3.session.Session) -> Iterator[AwsClients]:
    # mock_aws does not intercept when AWS_ENDPOINT_URL points boto3 elsewhere (FACTS.md).
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        aws = AwsClients(REGION, session=boto_session)
        create_jobs_table(aws)
        yield aws


@pytest.fixture
def repo(clients: AwsClients) -> DynamoDBJobRepository:
    return DynamoDBJobRepository(TABLE, clients)


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's item writes as DynamoDB does: moto checks the condition and writes without a lock, so two
    threads can both pass a check. The repository's condition expressions are what must make one of them lose."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("update_item", "put_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


def make_job(job_id: str = "job-1", tenant: str = "acme", created_at: str | None = None, **extra: Any) -> Job:
    fields: dict[str, Any] = {"job_id": job_id, "tenant": tenant, "source": Source(url="https://example.com/v.mp4")}
    if created_at is not None:
        fields["created_at"] = created_at
        fields["updated_at"] = created_at
    fields.update(extra)
    return Job(**fields)


def put_in_status(repo: DynamoDBJobRepository, job_id: str, status: JobStatus) -> None:
    repo.create(make_job(job_id))
    path = {
        JobStatus.QUEUED: [],
        JobStatus.PROCESSING: [JobStatus.PROCESSING],
        JobStatus.SUCCEEDED: [JobStatus.PROCESSING, JobStatus.SUCCEEDED],
        JobStatus.FAILED: [JobStatus.FAILED],
    }[status]
    for step in path:
        repo.transition(job_id, step)


# -- create / get ------------------------------------------------------------------------------------------------


def test_create_get_round_trip_is_exact_including_floats_and_nested_models(repo: DynamoDBJobRepository) -> None:
    job = make_job(
        tags={"team": "video", "empty": ""},
        source=Source(s3=S3Location(bucket="b", key="dir/a b é.mp4", version="v1")),
        callback_url="https://example.com/cb",
        sha256="ab" * 32,
        sampling=Sampling(mode="fps", fps=30000 / 1001, max_frames=None),
        video=VideoInfo(container="mov", codec="h264", width=1280, height=720, rotation=90, fps=30000 / 1001,
                        vfr=True, duration_s=1 / 3, frame_count=None),
        model=ModelInfo(name="efficientnet-lite0", version="imagenet-1", dim=1280),
        progress=0.1 + 0.2,
        timings=Timings(fetch_s=1e-7, decode_s=2.0000000000000004, embed_s=123456.789012345, index_s=5e-324,
                        total_s=0.30000000000000004),
        shots=[Shot(index=i, start_s=i / 7, end_s=(i + 1) / 7, start_frame=i * 3, end_frame=i * 3 + 2)
               for i in range(500)],
        callback=CallbackState(status="pending", attempts=0, last_status=None),
        request_hash="h1",
        staged_source=Source(s3=S3Location(bucket="svc", key="staging/j/source")),
        source_etag='"9b2cf535f27731c974343645a3985328-3"',
    )
    assert repo.create(job) == job
    got = repo.get(job.job_id)
    assert got is not None
    # 5e-324 is below DynamoDB's smallest magnitude (1e-130): stored as 0 on purpose.
    expected = job.model_copy(update={"timings": job.timings.model_copy(update={"index_s": 0.0})})
    assert got == expected
    assert got.video is not None and got.video.duration_s == 1 / 3
    assert got.shots[100].start_s == 100 / 7
    assert got.progress == 0.1 + 0.2


def test_get_missing_returns_none(repo: DynamoDBJobRepository) -> None:
    assert repo.get("nope") is None


def test_get_of_an_empty_id_is_none_not_a_validation_error(repo: DynamoDBJobRepository) -> None:
    # DynamoDB answers ValidationException for an empty key string: POST /search {"frame": {"job_id": ""}} was a 500.
    assert repo.get("") is None


def test_create_twice_conflicts_and_keeps_the_first(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job(tags={"n": "1"}))
    with pytest.raises(Conflict):
        repo.create(make_job(tags={"n": "2"}))
    got = repo.get("job-1")
    assert got is not None and got.tags == {"n": "1"}


def test_empty_tenant_is_refused_because_gsi_keys_cannot_be_empty(repo: DynamoDBJobRepository) -> None:
    with pytest.raises(InvalidRequest) as info:
        repo.create(make_job(tenant=""))
    assert info.value.field == "tenant"


def test_non_finite_float_is_refused(repo: DynamoDBJobRepository) -> None:
    with pytest.raises(InvalidRequest):
        repo.create(make_job(progress=float("nan")))


def test_item_stores_numbers_as_numbers_and_omits_none(repo: DynamoDBJobRepository, clients: AwsClients) -> None:
    repo.create(make_job(progress=0.5))
    item = clients.dynamodb.get_item(TableName=TABLE, Key={"job_id": {"S": "job-1"}})["Item"]
    assert item["progress"] == {"N": "0.5"}
    assert "error" not in item and "content_key" not in item
    assert item["status"] == {"S": "queued"}


def test_retention_sets_ttl_attribute(clients: AwsClients) -> None:
    repo = DynamoDBJobRepository(TABLE, clients, retention_s=3600)
    repo.create(make_job())
    item = clients.dynamodb.get_item(TableName=TABLE, Key={"job_id": {"S": "job-1"}})["Item"]
    assert int(item["expires_at"]["N"]) > 1_700_000_000
    assert repo.get("job-1") is not None  # storage-only attributes never reach the model


# -- transitions -------------------------------------------------------------------------------------------------

ALL_EDGES = [(a, b) for a in JobStatus for b in JobStatus]


@pytest.mark.parametrize(("start", "to"), ALL_EDGES, ids=[f"{a.value}->{b.value}" for a, b in ALL_EDGES])
def test_transition_follows_exactly_the_allowed_edges(
    repo: DynamoDBJobRepository, start: JobStatus, to: JobStatus
) -> None:
    put_in_status(repo, "job-1", start)
    if to in TRANSITIONS[start]:
        new = repo.transition("job-1", to)
        assert new.status is to
        stored = repo.get("job-1")
        assert stored == new
    else:
        with pytest.raises(InvalidTransition):
            repo.transition("job-1", to)
        stored = repo.get("job-1")
        assert stored is not None and stored.status is start


def test_transition_sets_fields_and_updated_at(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job(created_at="2020-01-01T00:00:00.000Z"))
    repo.transition("job-1", JobStatus.PROCESSING)
    done = repo.transition(
        "job-1", JobStatus.FAILED, error=ErrorInfo(code="unsupported_media", message="not a video"),
        timings=Timings(total_s=1.25), shots=[Shot(index=0, start_s=0.1, end_s=2 / 3, start_frame=2, end_frame=16)],
    )
    assert done.status is JobStatus.FAILED
    assert done.error == ErrorInfo(code="unsupported_media", message="not a video")
    assert done.timings.total_s == 1.25
    assert done.shots == [Shot(index=0, start_s=0.1, end_s=2 / 3, start_frame=2, end_frame=16)]
    assert done.updated_at > "2020-01-01T00:00:00.000Z"
    assert done.created_at == "2020-01-01T00:00:00.000Z"
    assert repo.get("job-1") == done


def test_transition_of_missing_job_raises_job_not_found(repo: DynamoDBJobRepository) -> None:
    with pytest.raises(JobNotFound):
        repo.transition("ghost", JobStatus.PROCESSING)
    with pytest.raises(JobNotFound):
        repo.transition("ghost", JobStatus.QUEUED)


def test_transition_refuses_immutable_fields(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job())
    with pytest.raises(TypeError):
        repo.transition("job-1", JobStatus.PROCESSING, tenant="other")


@pytest.mark.usefixtures("atomic_moto")
def test_racing_terminal_transitions_have_exactly_one_winner(repo: DynamoDBJobRepository) -> None:
    for n in range(8):
        job_id = f"race-{n}"
        put_in_status(repo, job_id, JobStatus.PROCESSING)
        barrier = threading.Barrier(2, timeout=10)
        outcomes: dict[JobStatus, str] = {}

        def attempt(to: JobStatus, job_id: str = job_id, barrier: threading.Barrier = barrier,
                    outcomes: dict[JobStatus, str] = outcomes) -> None:
            barrier.wait()
            try:
                repo.transition(job_id, to)
                outcomes[to] = "won"
            except InvalidTransition:
                outcomes[to] = "lost"

        threads = [threading.Thread(target=attempt, args=(s,)) for s in (JobStatus.SUCCEEDED, JobStatus.FAILED)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert sorted(outcomes.values()) == ["lost", "won"]
        winner = next(s for s, o in outcomes.items() if o == "won")
        stored = repo.get(job_id)
        assert stored is not None and stored.status is winner


# -- update ------------------------------------------------------------------------------------------------------


def test_update_dumps_models_and_none_removes(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job(error=ErrorInfo(code="x", message="y")))
    repo.update("job-1", progress=0.25, callback=CallbackState(status="delivered", attempts=2, last_status=204),
                error=None, content_key="k1", staged_source=Source(s3=S3Location(bucket="svc", key="staging/a")),
                source_etag='"e1"')
    got = repo.get("job-1")
    assert got is not None
    assert got.staged_source == Source(s3=S3Location(bucket="svc", key="staging/a")) and got.source_etag == '"e1"'
    assert got.progress == 0.25
    assert got.callback == CallbackState(status="delivered", attempts=2, last_status=204)
    assert got.error is None
    assert got.content_key == "k1"
    assert got.status is JobStatus.QUEUED


def test_update_validates_values_and_names(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job())
    with pytest.raises(InvalidRequest):
        repo.update("job-1", frames_indexed="many")
    with pytest.raises(TypeError):
        repo.update("job-1", no_such_field=1)
    with pytest.raises(TypeError):
        repo.update("job-1", status="succeeded")


def test_update_missing_job_raises_and_creates_nothing(repo: DynamoDBJobRepository) -> None:
    with pytest.raises(JobNotFound):
        repo.update("ghost", progress=0.5)
    assert repo.get("ghost") is None


def test_the_first_callback_message_kept_wins_compressed_and_private(repo: DynamoDBJobRepository,
                                                                     clients: AwsClients) -> None:
    repo.create(make_job())
    first = CallbackMessage(webhook_id="msg_a", body='{"type":"job.succeeded","data":{"x":"é"}}')
    before = repo.get("job-1")
    assert repo.keep_callback_message("job-1", first) == first
    assert repo.keep_callback_message("job-1", CallbackMessage(webhook_id="msg_a", body="{}")) == first
    got = repo.get("job-1")
    assert got is not None and before is not None
    assert got.callback_message == first and got.updated_at == before.updated_at
    assert "callback_message" not in got.public()
    item = clients.dynamodb.get_item(TableName=TABLE, Key={"job_id": {"S": "job-1"}})["Item"]
    assert "B" in item["callback_message"]
    with pytest.raises(JobNotFound):
        repo.keep_callback_message("ghost", first)
    assert repo.get("ghost") is None


def test_delete_is_idempotent(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job())
    repo.delete("job-1")
    repo.delete("job-1")
    assert repo.get("job-1") is None


# -- listing -----------------------------------------------------------------------------------------------------


def test_list_for_tenant_pages_newest_first_and_isolates_tenants(repo: DynamoDBJobRepository) -> None:
    for i in range(7):
        repo.create(make_job(f"a-{i}", "acme", created_at=f"2024-01-01T00:00:0{i}.000Z"))
    for i in range(3):
        repo.create(make_job(f"b-{i}", "beta", created_at=f"2024-01-01T00:00:0{i}.500Z"))
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        jobs, token = repo.list_for_tenant("acme", 3, token)
        pages += 1
        seen.extend(j.job_id for j in jobs)
        if token is None or pages > 10:
            break
    assert pages == 3
    assert seen == [f"a-{i}" for i in reversed(range(7))]
    beta, beta_token = repo.list_for_tenant("beta", 10, None)
    assert [j.job_id for j in beta] == ["b-2", "b-1", "b-0"] and beta_token is None
    assert repo.list_for_tenant("nobody", 10, None) == ([], None)


def test_list_for_tenant_last_full_page_has_no_token(repo: DynamoDBJobRepository) -> None:
    for i in range(4):
        repo.create(make_job(f"a-{i}", created_at=f"2024-01-01T00:00:0{i}.000Z"))
    first, token = repo.list_for_tenant("acme", 2, None)
    assert token is not None
    second, token = repo.list_for_tenant("acme", 2, token)
    assert [j.job_id for j in first + second] == ["a-3", "a-2", "a-1", "a-0"]
    assert token is None


@pytest.mark.parametrize("garbage", ["x", "not.a.token", "!!!.???", "eyJqIjoiYSJ9.AAAA", "." * 5])
def test_garbage_token_is_invalid_request(repo: DynamoDBJobRepository, garbage: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        repo.list_for_tenant("acme", 2, garbage)
    assert info.value.field == "next_token"


def test_token_is_bound_to_tenant_and_tamper_evident(repo: DynamoDBJobRepository) -> None:
    for i in range(3):
        repo.create(make_job(f"a-{i}", "acme", created_at=f"2024-01-01T00:00:0{i}.000Z"))
        repo.create(make_job(f"b-{i}", "beta", created_at=f"2024-01-01T00:00:0{i}.000Z"))
    _, token = repo.list_for_tenant("acme", 1, None)
    assert token is not None
    with pytest.raises(InvalidRequest):
        repo.list_for_tenant("beta", 1, token)
    _body, mac = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"j":"b-2","c":"2024-01-01T00:00:09.000Z"}').decode().rstrip("=")
    with pytest.raises(InvalidRequest):
        repo.list_for_tenant("acme", 1, f"{forged}.{mac}")


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range_is_invalid(repo: DynamoDBJobRepository, limit: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        repo.list_for_tenant("acme", limit, None)
    assert info.value.field == "limit"


# -- content reuse -----------------------------------------------------------------------------------------------


def test_find_by_content_returns_newest_succeeded(repo: DynamoDBJobRepository) -> None:
    assert repo.find_by_content("k") is None
    for job_id, stamp in (("old", "2024-01-01T00:00:01.000Z"), ("new", "2024-01-01T00:00:02.000Z")):
        put_in_status(repo, job_id, JobStatus.PROCESSING)
        repo.transition(job_id, JobStatus.SUCCEEDED, content_key="k", updated_at=stamp)
    put_in_status(repo, "running", JobStatus.PROCESSING)
    repo.update("running", content_key="k", updated_at="2024-01-01T00:00:09.000Z")
    put_in_status(repo, "other", JobStatus.PROCESSING)
    repo.transition("other", JobStatus.SUCCEEDED, content_key="k2")
    found = repo.find_by_content("k")
    assert found is not None and found.job_id == "new"
    assert repo.find_by_content("") is None


# -- idempotency -------------------------------------------------------------------------------------------------


def test_create_idempotent_same_hash_returns_existing_other_hash_conflicts(repo: DynamoDBJobRepository) -> None:
    job, created = repo.create_idempotent(make_job(tags={"n": "1"}), "key-1", "hash-a")
    assert created and job.request_hash == "hash-a"
    again, created_again = repo.create_idempotent(make_job(tags={"n": "2"}), "key-1", "hash-a")
    assert not created_again
    assert again == job
    with pytest.raises(IdempotencyConflict):
        repo.create_idempotent(make_job(), "key-1", "hash-b")
    repo.transition("job-1", JobStatus.PROCESSING)
    later, _ = repo.create_idempotent(make_job(), "key-1", "hash-a")
    assert later.status is JobStatus.PROCESSING


def test_create_idempotent_over_plain_create_conflicts(repo: DynamoDBJobRepository) -> None:
    repo.create(make_job())
    with pytest.raises(IdempotencyConflict):
        repo.create_idempotent(make_job(), "key-1", "hash-a")


# -- segment counter ---------------------------------------------------------------------------------------------


# -- SDK error mapping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400), ("InternalServerError", 500)],
)
def test_throttling_and_5xx_become_transient(repo: DynamoDBJobRepository, clients: AwsClients, code: str,
                                             status: int) -> None:
    with Stubber(clients.dynamodb) as stub:
        stub.add_client_error("get_item", service_error_code=code, http_status_code=status)
        with pytest.raises(TransientError):
            repo.get("job-1")


def test_other_client_errors_propagate(repo: DynamoDBJobRepository, clients: AwsClients) -> None:
    with Stubber(clients.dynamodb) as stub:
        stub.add_client_error("get_item", service_error_code="ResourceNotFoundException", http_status_code=400)
        with pytest.raises(ClientError):
            repo.get("job-1")


def test_clients_are_built_lazily_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws = AwsClients(REGION, endpoint_url="http://127.0.0.1:9")
    assert aws._clients == {}
    assert aws.sqs is aws.sqs
    assert aws.sqs.meta.endpoint_url == "http://127.0.0.1:9"
    assert set(aws._clients) == {"sqs"}


def test_tenants_of_reads_in_batches_and_skips_unknown_ids(repo: DynamoDBJobRepository) -> None:
    ids = [f"job-{i:03d}" for i in range(130)]  # two BatchGetItem calls
    for i, job_id in enumerate(ids):
        repo.create(make_job(job_id, tenant="acme" if i % 2 else "other"))
    found = repo.tenants_of([*ids, "unknown", "", ids[0]])
    assert found == {job_id: "acme" if i % 2 else "other" for i, job_id in enumerate(ids)}
    assert repo.tenants_of([]) == {}
