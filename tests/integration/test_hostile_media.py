"""Hostile media through the real analyze service (PyAV, the real model, embedded Qdrant, HTTP fetch from loopback).

Every case ends its job `succeeded` or `failed` with a specific `error.code` within a bounded time, leaves no file in
the work dir, sends one "job finished" notification, and indexes exactly the frames it reports. A good job run
alongside the hostile ones still succeeds. A few cases go through `video-ai serve` end to end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import ROOT
from tests.fakes import RecordingNotifier, RecordingQueue
from tests.fixtures.hostile_media import CORPUS, HostileMedia, build_corpus
from tests.integration.serve_helpers import FileServer, ServeProcess, serve_stack, wait_for
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.adapters.s3_store import S3VideoFetcher, s3_locations_from_notification
from video_ai.domain.models import Job, S3Location, Sampling, SearchFilter, Source
from video_ai.domain.ports import VideoFetcher
from video_ai.local.resources import create_resources
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.services.submit_job import SubmitDeps, SubmitJob, submit_job
from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings

JOB_BOUND_S = 60.0  # per job, generous for a loaded 2-core machine; the slowest case here takes well under 2 s


@dataclass
class Env:
    corpus: dict[str, HostileMedia]
    directory: Path
    files: FileServer
    embedder: OnnxEmbedder
    index: QdrantEdgeIndex
    workdir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("hostile-media")
    corpus = build_corpus(directory)
    files = FileServer(directory)
    index = QdrantEdgeIndex(tmp_path_factory.mktemp("qdrant"))
    embedder = OnnxEmbedder(ModelSettings(path=model_path), model_path)
    try:
        yield Env(corpus, directory, files, embedder, index, tmp_path_factory.mktemp("work") / "tmp")
    finally:
        index.close()
        files.close()


def _fetcher(env: Env, s3: VideoFetcher | None = None) -> HttpVideoFetcher:
    port = int(env.files.server.server_address[1])
    network = NetworkSettings(allow_http=True, allow_private_addresses=True)
    return HttpVideoFetcher(network, LimitsSettings(), s3_fetcher=s3, exempt_endpoints=[("127.0.0.1", port)])


def _deps(env: Env, limits: LimitsSettings | None = None, s3: VideoFetcher | None = None,
          frames: PyAVFrameSource | None = None) -> AnalyzeDeps:
    return AnalyzeDeps(
        jobs=InMemoryJobRepository(), fetcher=_fetcher(env, s3),
        frames=frames or PyAVFrameSource(limits=limits or LimitsSettings()), embedder=env.embedder,
        index=env.index, notifier=RecordingNotifier(), workdir=env.workdir,
    )


def _run(deps: AnalyzeDeps, source: Source) -> tuple[Job, float]:
    """Submit and analyze one job (as the queue's last delivery); bounded by JOB_BOUND_S."""
    job = submit_job(SubmitJob(source=source, tenant="t", sampling=Sampling(fps=1.0)),
                     SubmitDeps(jobs=deps.jobs, queue=RecordingQueue())).job
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(analyze_video, job.job_id, deps, final_attempt=True).result(timeout=JOB_BOUND_S)
    done = deps.jobs.get(job.job_id)
    assert done is not None
    return done, time.monotonic() - started


def _check(env: Env, deps: AnalyzeDeps, job: Job, expected: HostileMedia) -> None:
    outcome = (job.status.value, job.error.code if job.error else None)
    assert outcome == (expected.status, expected.code), (expected.name, job.error)
    if expected.status == "succeeded":
        assert job.frames_indexed >= expected.min_frames
    # What the job reports is what the index holds: no duplicate or orphan points.
    assert env.index.count(env.embedder.info, SearchFilter(job_id=job.job_id)) == job.frames_indexed
    assert isinstance(deps.notifier, RecordingNotifier)
    assert [j.job_id for j in deps.notifier.finished] == [job.job_id]


def _workdir_empty(env: Env) -> bool:
    return not env.workdir.exists() or not any(env.workdir.iterdir())


@pytest.mark.parametrize("case", [entry for entry, _ in CORPUS], ids=[entry.name for entry, _ in CORPUS])
def test_hostile_file_ends_the_job_with_its_expected_outcome(env: Env, case: HostileMedia) -> None:
    deps = _deps(env, LimitsSettings(**dict(case.limits)))
    job, took = _run(deps, Source(url=env.files.url(case.name)))
    _check(env, deps, job, case)
    assert took < JOB_BOUND_S
    assert _workdir_empty(env), list(env.workdir.iterdir())


class _JumpingClock:
    """Each reading is 10 s after the last: any decode pass looks like it has been running for minutes."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10.0
        return self.now


def test_decode_watchdog_fails_a_pass_that_runs_too_long(env: Env) -> None:
    frames = PyAVFrameSource(limits=LimitsSettings(decode_timeout_s=25.0), clock=_JumpingClock())
    deps = _deps(env, frames=frames)
    job, _ = _run(deps, Source(url=env.files.url("good.mp4")))
    assert job.status.value == "failed" and job.error is not None and job.error.code == "decode_timeout", job.error
    assert env.index.count(env.embedder.info, SearchFilter(job_id=job.job_id)) == 0
    assert _workdir_empty(env)


def test_a_good_job_alongside_hostile_ones_still_succeeds(env: Env) -> None:
    deps = _deps(env)
    names = ["random.mp4", "huge-moov.mp4", "good.mp4", "streams.mkv", "garbled.mp4", "pts-backwards.ts",
             "error-page.mp4"]
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(names, pool.map(lambda n: _run(deps, Source(url=env.files.url(n)))[0], names),
                           strict=True))
    good = results["good.mp4"]
    assert good.status.value == "succeeded" and good.frames_indexed == 3 and good.shots_detected == 2, good.error
    for name, job in results.items():
        if name != "good.mp4":
            _check_outcome(job, env.corpus[name])
    assert _workdir_empty(env)


def _check_outcome(job: Job, expected: HostileMedia) -> None:
    assert (job.status.value, job.error.code if job.error else None) == (expected.status, expected.code), job.error


ODD_KEYS = [
    "tenants/t/my clip with spaces.mp4",
    "tenants/t/été 日本語 \u202egnp.mp4",  # unicode with an RTL override
    "tenants/t/a+b=c&d.mp4",
    "tenants/t/100% real%20name%2B.mp4",
    "tenants/t/what?#frag;x.mp4",
    "tenants/t/" + "k" * 990 + ".mp4",  # S3's limit is 1,024 bytes
]


def test_s3_keys_with_odd_characters_decode_and_analyze(env: Env, tmp_path: Path) -> None:
    clip = (env.directory / "good.mp4").read_bytes()
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        resources = create_resources(session, ROOT / "template.yaml", stage="hostile")
        s3, sqs = session.client("s3"), session.client("sqs")
        for key in ODD_KEYS:
            s3.put_object(Bucket=resources.uploads_bucket, Key=key, Body=clip)
        keys: list[str] = []
        for _ in range(10):
            messages = sqs.receive_message(QueueUrl=resources.uploads_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for message in messages:
                keys += [loc.key for loc in s3_locations_from_notification(message["Body"])]
        # The notification URL-encodes keys (space as "+"): each decodes back to the key that was written.
        assert sorted(keys) == sorted(ODD_KEYS)
        s3_fetcher = S3VideoFetcher(AwsClients("us-east-1", session=session), LimitsSettings().max_source_bytes)
        deps = _deps(env, s3=s3_fetcher)
        for key in ODD_KEYS:
            job, _ = _run(deps, Source(s3=S3Location(bucket=resources.uploads_bucket, key=key)))
            assert job.status.value == "succeeded" and job.frames_indexed == 3, (key, job.error)
    assert _workdir_empty(env)


# ---------------------------------------------------------------- end to end through `video-ai serve`

SERVE_CASES = ["random.mp4", "audio.m4a", "error-page.mp4", "tiny.mp4", "huge-moov.mp4"]


@pytest.fixture(scope="module")
def stack(env: Env, tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("serve-hostile")
    with serve_stack(workdir, level="WARNING", env={"VIDEO_AI__MODEL__PATH": str(model_path)}) as proc:
        proc.info["data_dir"] = str(workdir / "data")
        yield proc


def test_hostile_media_through_serve(env: Env, stack: ServeProcess) -> None:
    with stack.client() as client:
        ids: dict[str, str] = {}
        for name in [*SERVE_CASES, "good.mp4"]:
            response = client.post("/analyze", json={"video_url": env.files.url(name)})
            assert response.status_code == 202, response.text
            ids[name] = response.json()["job_id"]

        def finished() -> dict[str, dict[str, Any]] | None:
            jobs = {name: client.get(f"/jobs/{job_id}").json() for name, job_id in ids.items()}
            return jobs if all(j["status"] in ("succeeded", "failed") for j in jobs.values()) else None

        jobs = wait_for(finished, 120, interval=0.5, what="every hostile job to finish")
    for name in SERVE_CASES:
        expected = env.corpus[name]
        job = jobs[name]
        assert (job["status"], (job["error"] or {}).get("code")) == (expected.status, expected.code), job
    assert jobs["good.mp4"]["status"] == "succeeded" and jobs["good.mp4"]["frames_indexed"] == 3
    tmp = Path(stack.info["data_dir"]) / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())
