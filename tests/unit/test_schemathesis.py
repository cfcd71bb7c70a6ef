"""schemathesis against the app's own OpenAPI schema, in-process over ASGI with fakes: every phase (examples,
coverage, fuzzing, stateful), no 5xx, responses match the schema.

The same run against the real adapters (DynamoDB, SQS and SNS on moto, the URL guard, qdrant-edge, the real model) is
tests/integration/test_schemathesis_real.py, with the helpers below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import JOB_LINKS, ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import JobStatus, Sampling, Source
from video_ai.domain.ports import Embedder, JobQueue, JobRepository, VectorIndex
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job
from video_ai.settings import Settings

KEY = "schemathesis-key"
AUTH = {"x-api-key": KEY}
# A schema violation or a 5xx fails the build; the other default checks judge API design choices the schema cannot
# state (a 404 for a well-formed unknown id, a 422 for a URL the guard refuses).
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
          response_headers_conformance]
# The bound on the run: ~20 s for the fuzzing/coverage/examples phases over every route and ~10 s of stateful
# scenarios on 2 cores (the whole suite must stay well under CI's 30 minutes).
FUZZ_EXAMPLES = 100
STATEFUL_SCENARIOS = 32
STATEFUL_STEPS = 8

VIDEO_URL = "https://videos.example/clip.mp4"
JOB_IDS: dict[str, str] = {}
FUZZED: dict[str, Counter[int]] = {}


def fuzz_config() -> SchemathesisConfig:
    """Every phase on, positive and negative data, a bounded number of examples, our key on every request."""
    return SchemathesisConfig.from_dict({
        "headers": AUTH,
        "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES, "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS}},
    })


def fuzz_context(settings_: Settings, jobs: JobRepository, queue: JobQueue, index_factory: Callable[[], VectorIndex],
                 embedder_factory: Callable[[], Embedder]) -> ApiContext:
    """What the app needs, with KEY for tenant "t"."""
    settings_.api.api_key_hashes = {hash_key(KEY): "t"}
    return ApiContext(settings=settings_, jobs=jobs, queue=queue, auth=ApiKeyAuth(settings_.api.api_key_hashes),
                      index_factory=index_factory, embedder_factory=embedder_factory)


def seed_jobs(ctx: ApiContext, job_ids: dict[str, str]) -> None:
    """Two jobs of tenant "t", a succeeded one and a queued one, their ids in `job_ids`."""
    deps = SubmitDeps(jobs=ctx.jobs, queue=ctx.queue)
    done = submit_job(SubmitJob(source=Source(url="https://e.com/v.mp4"), tenant="t", sampling=Sampling()), deps)
    ctx.jobs.transition(done.job.job_id, JobStatus.PROCESSING)
    ctx.jobs.transition(done.job.job_id, JobStatus.SUCCEEDED, frames_indexed=0)
    job_ids["succeeded"] = done.job.job_id
    queued = submit_job(SubmitJob(source=Source(url="https://e.com/w.mp4"), tenant="t", sampling=Sampling()), deps)
    job_ids["queued"] = queued.job.job_id


def fake_context() -> ApiContext:
    settings_ = Settings.model_validate({})
    settings_.model.name, settings_.model.version, settings_.model.dim = "fake", "1", 4
    index, embedder = FakeIndex(), FakeEmbedder()
    return fuzz_context(settings_, InMemoryJobRepository(), RecordingQueue(), lambda: index, lambda: embedder)


CTX = fake_context()
seed_jobs(CTX, JOB_IDS)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(CTX), config=fuzz_config())


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_own_schema(case: schemathesis.Case[Any]) -> None:
    response = case.call_and_validate(checks=CHECKS)
    record(FUZZED, case, response)


def record(fuzzed: dict[str, Counter[int]], case: Any, response: Any) -> None:
    fuzzed.setdefault(f"{case.method} {case.path}", Counter())[response.status_code] += 1


def test_the_fuzzer_got_past_authentication() -> None:
    # Every generated request carries the key (config headers): most answers must come from the routes themselves.
    check_fuzzed(schema, FUZZED)


def check_fuzzed(schema_: Any, fuzzed: dict[str, Counter[int]]) -> None:
    operations = {f"{method.upper()} {path}" for path, item in schema_.raw_schema["paths"].items() for method in item}
    assert operations <= set(fuzzed), operations - set(fuzzed)
    for operation in operations:
        statuses = fuzzed[operation]
        assert sum(n for code, n in statuses.items() if code != 401) > statuses[401], (operation, statuses)


def run_stateful(schema_: Any) -> None:
    """Scenarios that follow the OpenAPI links from POST /analyze to the job routes, with the ids it returns."""
    seen: dict[str, set[int]] = {}

    class Workflow(schema_.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # A generated string is almost never a URL the guard lets through (a public https host): give the
            # analyze calls of a scenario a real one, so POST /analyze makes jobs and the links lead to them. The
            # other phases fuzz video_url itself.
            if case.operation.label == "POST /analyze" and isinstance(case.body, dict):
                case.body.pop("s3_uri", None)
                case.body["video_url"] = VIDEO_URL

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(Workflow, settings=settings(
        max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, deadline=None,
        suppress_health_check=list(HealthCheck), database=None, derandomize=True,
    ))
    # The links took real ids to the job routes: a job POST /analyze made was found and read (which route first
    # is the draw's), and deleted.
    assert 202 in seen.get("POST /analyze", set())
    assert any(200 in codes for route, codes in seen.items() if route.startswith("GET /jobs/{job_id}")), seen
    assert 204 in seen.get("DELETE /jobs/{job_id}", set()), seen


def test_stateful_scenarios_follow_links_from_analyze_to_the_job_routes() -> None:
    run_stateful(schema)


def test_analyze_links_every_route_that_takes_a_job_id() -> None:
    paths = schema.raw_schema["paths"]
    links = paths["/analyze"]["post"]["responses"]["202"]["links"]
    job_routes = {(p, m) for p, item in paths.items() if "{job_id}" in p and p.count("{") == 1 for m in item}
    assert set(JOB_LINKS) <= set(links) and len(links) == len(job_routes)  # new job routes are linked too
    pointers = {"#/paths/" + p.replace("/", "~1") + "/" + m for p, m in job_routes}
    assert {link["operationRef"] for link in links.values()} == pointers
    for link in links.values():
        assert link["parameters"] == {"job_id": "$response.body#/job_id"}
    # The API function's app (no index routes: the SearchFunction serves those) links only the routes it has.
    api_only = create_app(fake_context(), index_routes=False, prometheus=False).openapi()
    api_links = set(api_only["paths"]["/analyze"]["post"]["responses"]["202"]["links"])
    assert {"GetJob", "ListShots", "ReplayCallback"} <= api_links and not {"ListFrames", "DeleteJob"} & api_links


def check_job_routes(schema_: Any, job_ids: dict[str, str]) -> None:
    # Generated ids almost never name a job: check the 200 (and 409) shapes of the job routes explicitly.
    seen: set[int] = set()
    routes = [(path, method.upper()) for path, item in schema_.raw_schema["paths"].items() for method in item
              if "{job_id}" in path and path.count("{") == 1 and method != "delete"]
    assert {("/jobs/{job_id}", "GET"), ("/jobs/{job_id}/callback", "POST")} <= set(routes)
    for path, method in routes:
        for job_id in job_ids.values():
            case = schema_[path][method].Case(path_parameters={"job_id": job_id})
            response = case.call_and_validate(headers=AUTH, checks=CHECKS)
            seen.add(response.status_code)
    assert {200, 409} <= seen


def test_routes_on_existing_jobs_conform_to_the_schema() -> None:
    check_job_routes(schema, JOB_IDS)
