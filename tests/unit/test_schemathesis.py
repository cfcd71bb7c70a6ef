"""schemathesis against the app's own OpenAPI schema, in-process over ASGI with fakes: no 5xx, responses match it."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import JobStatus, Sampling, Source
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job
from video_ai.settings import Settings

KEY = "schemathesis-key"
AUTH = {"x-api-key": KEY}


JOB_IDS: dict[str, str] = {}


def _app() -> Any:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY): "t"}}})
    settings.model.name, settings.model.version, settings.model.dim = "fake", "1", 4
    index, embedder = FakeIndex(), FakeEmbedder()
    jobs = InMemoryJobRepository()
    ctx = ApiContext(settings=settings, jobs=jobs, queue=RecordingQueue(), auth=ApiKeyAuth(settings.api.api_key_hashes),
                     index_factory=lambda: index, embedder_factory=lambda: embedder)
    # A finished job and a queued one, so generated ids sometimes hit real records (mostly they are 404s).
    deps = SubmitDeps(jobs=jobs, queue=RecordingQueue())
    done = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), tenant="t", sampling=Sampling()), deps)
    jobs.transition(done.job.job_id, JobStatus.PROCESSING)
    jobs.transition(done.job.job_id, JobStatus.SUCCEEDED, frames_indexed=0)
    JOB_IDS["succeeded"] = done.job.job_id
    queued = submit_job(SubmitJob(source=Source(url="https://e.com/w.mp4"), tenant="t", sampling=Sampling()), deps)
    JOB_IDS["queued"] = queued.job.job_id
    return create_app(ctx)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_own_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])


def test_routes_on_existing_jobs_conform_to_the_schema() -> None:
    # Generated ids almost never name a job: check the 200 (and 409) shapes of the job routes explicitly.
    seen: set[int] = set()
    for path, method in [("/jobs/{job_id}", "GET"), ("/jobs/{job_id}/frames", "GET"),
                         ("/jobs/{job_id}/shots", "GET"), ("/jobs/{job_id}/callback", "POST")]:
        for job_id in JOB_IDS.values():
            case = schema[path][method].Case(path_parameters={"job_id": job_id})
            response = case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])
            seen.add(response.status_code)
    assert {200, 409} <= seen
