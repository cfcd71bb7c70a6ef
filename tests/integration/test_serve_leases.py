"""`video-ai serve` and the run lease: a duplicate delivery of a running job's message does not run it, a restart after
a SIGKILL mid-run does not wait out the dead process's lease, and a job its dead submitter left queued and never sent
is sent at the restart. Real parts throughout: the serve subprocess, moto's SQS and DynamoDB, loopback HTTP."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import pytest

from tests.integration.serve_helpers import FileServer, Receiver, ServeProcess, wait_for, write_config
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.samples import ShotSpec, make_clip
from video_ai.services.deliver_callback import webhook_id

TRICKLE_S = 8.0  # how long the slow source takes to download: the job is `processing` all along
FPS = 2.0


class _Trickle(SimpleHTTPRequestHandler):
    """A source that takes TRICKLE_S to send: a job fetching it stays `processing` long enough to be raced."""

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:
        data = source.read()
        chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)]
        for chunk in chunks:
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(TRICKLE_S / len(chunks))

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lease-media")
    for i in range(3):
        make_clip(root / f"clip-{i}.mp4", fps=12.0, size=(96, 64),
                  shots=[ShotSpec(1.5, color=(40 + 50 * i, 60, 200)), ShotSpec(1.5, "stripes")])
    return root


@pytest.fixture(scope="module")
def slow(media: Path) -> Iterator[FileServer]:
    server = FileServer(media)
    server.server.RequestHandlerClass = lambda *a, **kw: _Trickle(*a, directory=str(media), **kw)  # type: ignore
    yield server
    server.close()


@pytest.fixture(scope="module")
def fast(media: Path) -> Iterator[FileServer]:
    server = FileServer(media)
    yield server
    server.close()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _jobs_queue(proc: ServeProcess) -> tuple[Any, str]:
    sqs = boto3.client("sqs", endpoint_url=proc.info["s3"], region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    url = next(u for u in sqs.list_queues()["QueueUrls"] if re.search(r"video-ai-jobs-queue-[^/]+$", u))
    return sqs, url


def test_a_duplicate_delivery_of_a_running_job_does_not_run_it(tmp_path: Path, slow: FileServer) -> None:
    config = tmp_path / "config.yml"
    write_config(config, tmp_path / "data", fps=FPS)
    secret = generate_secret()
    receiver = Receiver(secret)
    proc = ServeProcess(config, env={"VIDEO_AI_WEBHOOK_SECRETS": secret}).start()
    try:
        proc.wait_ready()
        with proc.client() as api:
            response = api.post("/analyze", json={"video_url": slow.url("clip-0.mp4"), "callback_url": receiver.url})
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            wait_for(lambda: api.get(f"/jobs/{job_id}").json()["status"] == "processing", 30, interval=0.05,
                     what="the job to start")
            # SQS delivers the job's message a second time while its owner runs (the second worker takes it).
            sqs, url = _jobs_queue(proc)
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id, "tenant": "dev"}))
            wait_for(lambda: proc.stderr_matching("held by another run"), 30, what="the duplicate to be turned away")
            assert api.get(f"/jobs/{job_id}").json()["status"] == "processing"  # the owner still runs
            job = wait_for(lambda: (j := api.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                           60, what="the job to finish")
            assert job["status"] == "succeeded" and job["frames_indexed"] == 6, job
            assert not any(k.startswith("lease") or k == "enqueued_at" for k in job), job  # private
            # The duplicate's copy keeps the queue's visibility timeout (as on Lambda), not serve's 2 s retry: it
            # neither runs the job nor uses up its receives, so it never reaches the DLQ and fails the job.
            time.sleep(7.0)  # > 3 receives at serve's 2 s retry
            assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
            assert not proc.stderr_matching("dead-lettered"), proc.stderr_tail(30)
            metrics = api.get("/metrics").text
            assert _metric(metrics, "video_ai_jobs_started_total") == 1.0
            assert _metric(metrics, "video_ai_jobs_succeeded_total") == 1.0
            wait_for(lambda: receiver.event_for(job_id), 30, what="the callback")
            assert [h["webhook-id"] for p, h in receiver.events if p["job_id"] == job_id] == [
                webhook_id(job_id, "job.succeeded", job["created_at"])]
    finally:
        proc.kill()
        receiver.close()


def test_a_restart_takes_over_a_job_killed_mid_run_at_once_and_sends_a_job_never_sent(
        tmp_path: Path, slow: FileServer, fast: FileServer) -> None:
    from video_ai.adapters.dynamodb_jobs import job_to_item
    from video_ai.domain.models import Job, Sampling, Source
    from video_ai.local.durable import _dumps

    config = tmp_path / "config.yml"
    data = tmp_path / "data"
    write_config(config, data, fps=FPS)
    proc = ServeProcess(config).start()
    try:
        proc.wait_ready()
        with proc.client() as api:
            response = api.post("/analyze", json={"video_url": slow.url("clip-1.mp4")})
            assert response.status_code == 202, response.text
            running = response.json()["job_id"]
            wait_for(lambda: api.get(f"/jobs/{running}").json()["status"] == "processing", 30, interval=0.05,
                     what="the job to start")
        state = data / "serve" / "state.sqlite"

        def leased() -> bool:
            with sqlite3.connect(state) as db:
                rows = db.execute("SELECT item FROM items WHERE item LIKE ?", (f"%{running}%",)).fetchall()
            return any("lease_job" in item for (item,) in rows)

        wait_for(leased, 10, what="the run's lease on record")
        proc.kill()  # SIGKILL mid-download: the lease (960 s) stays on the record
        assert leased()
        # And a job whose submitter died between writing it and sending its message (a crash in POST /analyze).
        never_sent = Job(job_id="00000000-0000-4000-8000-000000000031", tenant="dev",
                         source=Source(url=fast.url("clip-2.mp4")), sampling=Sampling(mode="fps", fps=FPS))
        item = job_to_item(never_sent)
        item["unsent"] = {"S": "queued"}
        with sqlite3.connect(state) as db:
            (table,) = db.execute("SELECT DISTINCT tbl FROM items").fetchone()
            db.execute("INSERT INTO items (tbl, hash, rng, item) VALUES (?, ?, '', ?)",
                       (table, json.dumps({"S": never_sent.job_id}, separators=(",", ":")), _dumps(item)))

        proc = ServeProcess(config).start()
        proc.wait_ready()
        started = time.monotonic()
        assert proc.stderr_matching("1 job(s) were held by the previous process"), proc.stderr_tail(30)
        assert proc.stderr_matching("1 job(s) left queued and never sent by the previous process"), proc.stderr_tail()
        with proc.client() as api:
            for job_id in (running, never_sent.job_id):
                job = wait_for(lambda j=job_id: (b := api.get(f"/jobs/{j}").json())["status"] in ("succeeded",
                                                                                                  "failed") and b,
                               90, what=f"job {job_id} to finish")
                assert job["status"] == "succeeded" and job["frames_indexed"] == 6, job
        assert time.monotonic() - started < 120 < 960  # far inside the dead owner's lease: it was not waited out
        # Released at the end: just after the job's end is recorded (the run's last step), so a reader that saw
        # `succeeded` may look a moment before the release lands.
        assert wait_for(lambda: not leased(), 10, what="the run's lease released")
    finally:
        proc.kill()
