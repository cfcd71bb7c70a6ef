"""schemathesis with every phase against the app wired as deployed: DynamoDB, SQS and SNS on moto (in-process), the
real URL guard (deployed profile), qdrant-edge, the real model, the text index and its sentence model: every part
Runtime.api_context() wires, as the API function does. The fakes of tests/unit/test_schemathesis.py
cannot fail the way these do: DynamoDB refused an empty job id with a ValidationException (a 500 for
POST /search {"frame": {"index": 0, "job_id": ""}}), qdrant-edge overflowed on a frame index of 2**64.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from moto import mock_aws

from tests.conftest import ROOT
from tests.unit.test_schemathesis import (
    AUTH,
    CHECKS,
    check_fuzzed,
    check_job_routes,
    fake_context,
    fuzz_config,
    fuzz_context,
    record,
    run_stateful,
    seed_jobs,
)
from video_ai.adapters.aws import AwsClients
from video_ai.api.app import ApiContext, create_app
from video_ai.domain.models import FramePoint, ModelInfo, point_id
from video_ai.local.resources import create_resources
from video_ai.runtime import Runtime
from video_ai.settings import Settings

JOB_IDS: dict[str, str] = {}
FUZZED: dict[str, Counter[int]] = {}
# The app is built at import (schemathesis reads its schema to make the tests); the module's fixture puts the real
# adapters (Runtime.api_context(), as the API function builds them) into its context before any request (pytest 9
# cannot run schemathesis's from_fixture loader).
CTX = fake_context()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(CTX), config=fuzz_config())


class PublicDns:
    """Every name resolves to one public address (no lookup leaves the machine); IP literals in URLs still go
    through the guard's own checks."""

    def __init__(self) -> None:
        self.lookups = 0

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return ["93.184.215.14"]


@pytest.fixture(scope="module", autouse=True)
def real_adapters(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Runtime]:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, ROOT / "template.yaml", stage="fuzz")
        settings_ = Settings.model_validate({
            "data_dir": str(tmp_path_factory.mktemp("data")),
            "model": {"path": str(model_path)},
            "aws": {"region": "us-east-1", **resources.aws_settings()},
        })
        runtime = Runtime(settings_, clients=AwsClients("us-east-1", session=session), resolver=PublicDns())
        # Every part as the deployed composition root wires it (URL guard, SNS notifier, the text index...), so a
        # route added later is fuzzed on its real adapters too; only the key is the test's.
        real = runtime.api_context()
        for part in dataclasses.fields(ApiContext):
            if not part.name.startswith("_"):
                setattr(CTX, part.name, getattr(real, part.name))
        CTX.auth = fuzz_context(settings_, CTX.jobs, CTX.queue, CTX.index_factory, CTX.embedder_factory).auth
        seed_jobs(CTX, JOB_IDS)
        _index_frames(runtime)
        try:
            yield runtime
        finally:
            runtime.close()


def _index_frames(runtime: Runtime) -> None:
    """Vectors for the succeeded job, so POST /search by frame reaches a stored vector."""
    m = runtime.settings.model
    model = ModelInfo(name=m.name, version=m.version, dim=m.dim)
    job_id = JOB_IDS["succeeded"]
    images = np.random.default_rng(0).integers(0, 255, size=(3, 64, 64, 3), dtype=np.uint8)
    vectors = runtime.embedder().embed(list(images))
    runtime.index().upsert(model, [
        FramePoint(id=point_id(job_id, i), vector=vector,
                   payload={"job_id": job_id, "tenant": "t", "index": i, "pts_s": float(i), "frame_number": i,
                            "shot": 0, "source": "https://e.com/v.mp4"})
        for i, vector in enumerate(vectors)
    ])


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_on_real_adapters_conforms_to_its_own_schema(case: schemathesis.Case[Any]) -> None:
    record(FUZZED, case, case.call_and_validate(checks=CHECKS))


def test_the_fuzzer_reached_the_real_routes() -> None:
    check_fuzzed(schema, FUZZED)


def test_stateful_scenarios_on_real_adapters() -> None:
    run_stateful(schema)


def test_job_routes_on_real_adapters_conform_to_the_schema() -> None:
    check_job_routes(schema, JOB_IDS)


def test_search_by_a_stored_frame_finds_it_first() -> None:
    body = {"frame": {"job_id": JOB_IDS["succeeded"], "index": 1}, "top_k": 3}
    response = schema["/search"]["POST"].Case(body=body).call_and_validate(headers=AUTH, checks=CHECKS)
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["frame_number"] == 1
