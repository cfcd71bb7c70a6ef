"""`video-ai serve` as a subprocess: the tutorial end to end, then a clean SIGTERM (bounded waits throughout)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.integration.serve_helpers import FileServer, Receiver, ServeProcess, serve_stack, wait_for, write_config
from tests.prom import Samples
from tests.prom import delta as _delta
from tests.prom import samples as _samples
from video_ai.samples import make_clip

JOB_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def clip(workdir: Path) -> Path:
    media = workdir / "media"
    media.mkdir()
    path = media / "clip.mp4"
    make_clip(path, duration_s=3.0, fps=12.0, size=(160, 120), shots=[1.5])
    return path


@pytest.fixture(scope="module")
def files(clip: Path) -> Iterator[FileServer]:
    server = FileServer(clip.parent)
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[ServeProcess]:
    with serve_stack(workdir) as proc:
        yield proc


@pytest.fixture(scope="module")
def receiver(stack: ServeProcess) -> Iterator[Receiver]:
    recv = Receiver(stack.info["webhook_secret"])
    yield recv
    recv.close()


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _finished(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job = _job(client, job_id)
    return job if job["status"] in ("succeeded", "failed") else None


def test_ready_lines_name_loopback_endpoints_and_credentials(stack: ServeProcess) -> None:
    info = stack.info
    assert info["api"].startswith("http://127.0.0.1:") and not info["api"].endswith(":0")
    assert info["s3"].startswith("http://127.0.0.1:")
    assert info["webhook_secret"].startswith("whsec_")
    assert httpx.get(info["api"] + "/health", timeout=5).json() == {"status": "ok"}
    assert httpx.get(info["api"] + "/jobs", timeout=5).status_code == 401
    with stack.client() as client:
        assert client.get("/jobs").status_code == 200


def test_analyze_delivers_a_signed_callback_and_the_job_succeeds(
    stack: ServeProcess, files: FileServer, receiver: Receiver
) -> None:
    with stack.client() as client:
        before = _samples(client.get("/metrics").text)
        response = client.post("/analyze", json={"video_url": files.url("clip.mp4"), "callback_url": receiver.url})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        payload, headers = wait_for(lambda: receiver.event_for(job_id), JOB_TIMEOUT_S, what="the callback")
        # The receiver only records deliveries that `standardwebhooks` verified against the printed secret.
        assert payload["type"] == "job.succeeded", payload
        assert headers["webhook-id"] and headers["webhook-signature"].startswith("v1,")
        job = _job(client, job_id)
        assert job["status"] == "succeeded", job
        assert job["frames_indexed"] >= 3
        assert job["tenant"] == "dev"
        frames = client.get(f"/jobs/{job_id}/frames").json()["items"]
        assert len(frames) == job["frames_indexed"]
        # The domain series on serve's /metrics counted this job (deltas: other tests share the stack).
        def delivered() -> Samples | None:
            now = _samples(client.get("/metrics").text)
            return now if _delta(now, before, "video_ai_callback_deliveries_total", outcome="delivered") >= 1 else None

        after = wait_for(delivered, 20, what="the delivery metric")
        assert _delta(after, before, "video_ai_jobs_accepted_total") >= 1
        assert _delta(after, before, "video_ai_jobs_succeeded_total") >= 1
        assert _delta(after, before, "video_ai_frames_indexed_total") >= job["frames_indexed"]
        assert _delta(after, before, "video_ai_job_seconds_count") >= 1


def test_a_replayed_callback_is_the_first_message_byte_for_byte_newly_signed(
    stack: ServeProcess, files: FileServer, receiver: Receiver
) -> None:
    with stack.client() as client:
        response = client.post("/analyze", json={"video_url": files.url("clip.mp4"), "callback_url": receiver.url,
                                                 "tags": {"case": "replay"}})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        wait_for(lambda: receiver.deliveries_for(job_id), JOB_TIMEOUT_S, what="the first callback")
        delivered = wait_for(lambda: _job(client, job_id)["callback"]["status"] == "delivered", 20,
                             what="the delivery to be recorded")
        assert delivered
        # The record has moved on since the first delivery (its callback state; updated_at with it).
        assert _job(client, job_id)["updated_at"] != json.loads(receiver.deliveries_for(job_id)[0][1])["timestamp"]
        time.sleep(1.1)  # a new second, so the replay's webhook-timestamp (whole seconds) is a new one
        replay = client.post(f"/jobs/{job_id}/callback")
        assert replay.status_code == 202, replay.text
        (first_headers, first), (again_headers, again) = wait_for(
            lambda: d if len(d := receiver.deliveries_for(job_id)) >= 2 else None, 30, what="the replayed callback")
        # Both verified against the printed secret by `standardwebhooks` (the receiver records nothing else).
        assert again == first
        assert again_headers["webhook-id"] == first_headers["webhook-id"]
        assert int(again_headers["webhook-timestamp"]) > int(first_headers["webhook-timestamp"])
        assert again_headers["webhook-signature"] != first_headers["webhook-signature"]
        assert _job(client, job_id)["callback"]["attempts"] == 2


def test_a_talks_transcript_pages_drops_word_timings_and_streams_subtitles(
    stack: ServeProcess, files: FileServer, clip: Path
) -> None:
    import numpy as np

    from tests.fixtures.speech_media import RATE, load, make_media, words

    speech = load()
    pause = np.zeros(2 * RATE, dtype=np.float32)
    make_media(clip.parent / "talk.m4a", video_s=None, audio=np.concatenate([speech, pause, speech]))
    with stack.client() as client:
        response = client.post("/analyze", json={"video_url": files.url("talk.m4a"), "features": ["speech"]})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        job = wait_for(lambda: _finished(client, job_id), JOB_TIMEOUT_S, what="the talk's job")
        assert job["status"] == "succeeded", job
        route = f"/jobs/{job_id}/transcript"
        whole = client.get(route)
        assert whole.status_code == 200 and whole.json()["next_token"] is None
        segments = whole.json()["segments"]
        assert len(segments) >= 2 and all(s["words"] for s in segments)
        said = [w for s in segments for w in words(s["text"])]
        assert said.count("americans") == 2 and {"fellow", "country"} <= set(said)  # the speech, twice
        # One segment a page, following next_token, gives the whole transcript back.
        paged: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1}
        for _ in range(len(segments) + 1):
            page = client.get(route, params=params).json()
            paged += page["segments"]
            if page["next_token"] is None:
                break
            params = {"limit": 1, "next_token": page["next_token"]}
        assert paged == segments
        bare = client.get(route, params={"words": "false"})
        assert bare.json()["segments"] == [{k: v for k, v in s.items() if k != "words"} for s in segments]
        assert len(bare.content) < len(whole.content)
        vtt = client.get(route, params={"format": "vtt"})
        assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
        assert vtt.text.startswith("WEBVTT\n") and vtt.text.count(" --> ") == len(segments)
        bad: list[tuple[dict[str, str], str]] = [
            ({"next_token": "zz"}, "next_token"), ({"limit": "0"}, "limit"), ({"words": "perhaps"}, "words"),
            ({"format": "txt"}, "format"), ({"format": "srt", "limit": "5"}, "limit")]
        for query, field in bad:
            refused = client.get(route, params=query)
            assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text


def test_s3_upload_creates_a_job_that_succeeds(stack: ServeProcess, clip: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=stack.info["s3"], region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing", config=Config(retries={"max_attempts": 2}))
    bucket = s3.list_buckets()["Buckets"][0]["Name"]
    key = "tenants/dev/uploads/my clip.mp4"
    s3.put_object(Bucket=bucket, Key=key, Body=clip.read_bytes())

    with stack.client() as client:
        def uploaded_job() -> dict[str, Any] | None:
            items = client.get("/jobs").json()["items"]
            return next((j for j in items if (j["source"].get("s3") or {}).get("key") == key), None)

        job = wait_for(uploaded_job, 30, what="the upload's job in GET /jobs")
        assert job["source"]["s3"]["bucket"] == bucket
        done = wait_for(lambda: _finished(client, job["job_id"]), JOB_TIMEOUT_S, what="the upload's job to finish")
        assert done["status"] == "succeeded", done
        assert done["tags"].get("trigger") == "s3-upload"


class _Unavailable(BaseHTTPRequestHandler):
    hits: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        self.hits.append(time.monotonic())
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_transient_failure_is_retried_then_fails_the_job_and_its_message_is_dead_lettered(stack: ServeProcess) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    sqs = boto3.client("sqs", endpoint_url=stack.info["s3"], region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    try:
        with stack.client() as client:
            url = f"http://127.0.0.1:{server.server_address[1]}/flaky.mp4"
            job_id = client.post("/analyze", json={"video_url": url}).json()["job_id"]
            job = wait_for(lambda: _finished(client, job_id), JOB_TIMEOUT_S, what="the flaky job to finish")
        assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted", job
        assert len(_Unavailable.hits) == 3  # maxReceiveCount 3: three worker attempts, each one fetch
        dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "jobs-dead-letter" in u)

        def dead_lettered() -> bool:
            # The redrive moved the message to the DLQ, where serve's jobs-dead-letter poller (JobsDeadLetterFunction)
            # took it: the job had ended, so it stays as it is (its callback is not sent twice).
            return any("dead-lettered after its last attempt; job failed (retries_exhausted)" in line
                       and job_id in line for line in list(stack.stderr_lines))

        assert wait_for(dead_lettered, 20, what="the message taken from the jobs DLQ")
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_second_serve_on_a_busy_port_fails_with_one_line(stack: ServeProcess, workdir: Path) -> None:
    port = int(stack.info["api"].rsplit(":", 1)[1])
    other = workdir / "other-data.yml"  # its own data dir: only the port is shared
    write_config(other, workdir / "other-data")
    second = ServeProcess(other, port=port).start()
    try:
        code = second.wait_exit(60)
    finally:
        second.kill()
    assert code != 0
    errors = second.stderr_matching("already in use")
    assert len(errors) == 1 and f":{port}" in errors[0], second.stderr_tail()
    assert second.stdout_lines.empty()


def test_bad_config_exits_2_naming_the_field(workdir: Path) -> None:
    bad = workdir / "bad.yml"
    write_config(bad, workdir / "bad-data", fps=-1)
    proc = ServeProcess(bad).start()
    try:
        code = proc.wait_exit(60)
    finally:
        proc.kill()
    assert code == 2
    assert [line for line in proc.stderr_lines if line.strip()] == proc.stderr_matching("sampling.fps"), (
        proc.stderr_tail())
    assert len(proc.stderr_matching("sampling.fps")) == 1


def test_second_serve_on_the_same_data_dir_refuses_at_start_with_one_line(stack: ServeProcess,
                                                                          workdir: Path) -> None:
    # Another port, the same config (so the same data dir): Qdrant's embedded engine there has one writer.
    second = ServeProcess(workdir / "config.yml", port=0).start()
    try:
        code = second.wait_exit(60)
    finally:
        second.kill()
    assert code == 14, second.stderr_tail()
    lines = [line for line in second.stderr_lines if line.strip()]
    pid = stack.proc.pid if stack.proc else 0
    assert len(lines) == 1 and lines[0].startswith("video-ai: error: data_dir_busy:"), lines
    assert f"`video-ai serve` (pid {pid}, api {stack.info['api']})" in lines[0]
    assert second.stdout_lines.empty()


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIDEO_AI__LOGGING__LEVEL": "WARNING"}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run([sys.executable, "-m", "video_ai.cli", *args, "--config", str(workdir / "config.yml")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_beside_serve_searches_through_its_api_and_analyze_names_the_holder(
    stack: ServeProcess, files: FileServer, clip: Path, workdir: Path
) -> None:
    with stack.client() as client:
        job_id = client.post("/analyze", json={"video_url": files.url("clip.mp4")}).json()["job_id"]
        job = wait_for(lambda: _finished(client, job_id), JOB_TIMEOUT_S, what="the job to finish")
        frames = client.get(f"/jobs/{job_id}/frames").json()["items"]
    assert job["status"] == "succeeded", job
    # search: the index is serve's, so the CLI asks serve (tenant dev) and the job submitted through it is found.
    found = _cli(workdir, "search", "--frame", f"{job_id}:1", "--job-id", job_id, "--top-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout)[0]
    assert (hit["job_id"], hit["index"], hit["frame_number"]) == (job_id, 1, frames[1]["frame_number"])
    assert "searching through its API" in found.stderr and "Traceback" not in found.stderr
    missing = _cli(workdir, "search", "--frame", "no-such-job:0")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    assert len([line for line in missing.stderr.splitlines() if line.startswith("video-ai: error:")]) == 1
    # analyze: would write the index serve holds; one line names serve and what to do, exit 14.
    busy = _cli(workdir, "analyze", str(clip))
    errors = [line for line in busy.stderr.splitlines() if line.startswith("video-ai: error:")]
    assert busy.returncode == 14 and len(errors) == 1 and "Traceback" not in busy.stderr, busy.stderr
    assert "data_dir_busy" in errors[0] and f"POST {stack.info['api']}/analyze" in errors[0]


def test_the_readme_snippets_run_as_written(stack: ServeProcess, clip: Path, tmp_path: Path) -> None:
    """Every ```python block, and every shell block marked `<!-- snippet: run -->`, against this `serve`."""
    from tests.readme_snippets import snippets

    runnable = [s for s in snippets() if s.runs]
    assert any(s.language == "python" for s in runnable), "the README has no python snippet"
    (tmp_path / "media").mkdir()
    shutil.copyfile(clip, tmp_path / "media" / "demo.mp4")  # the tutorial's step 2 made media/demo.mp4
    # The tutorial's shell variables, as its step 1 tells the reader to set them.
    env = {**os.environ, "API": stack.info["api"], "KEY": stack.info["api_key"], "S3": stack.info["s3"],
           "SECRET": stack.info["webhook_secret"], "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    env.pop("AWS_ENDPOINT_URL", None)
    for snippet in runnable:
        # The tutorial's example addresses stand for the ones `serve` printed; nothing else is changed.
        code = snippet.code.replace("http://127.0.0.1:41234", stack.info["s3"]).replace(
            "http://127.0.0.1:8000", stack.info["api"])
        command = [sys.executable, "-c", code] if snippet.language == "python" else ["bash", "-euo", "pipefail",
                                                                                    "-c", code]
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"README.md line {snippet.line}: {proc.stderr}"


def test_log_lines_name_their_own_function_in_one_format(stack: ServeProcess) -> None:
    import re

    lines = [line for line in stack.stderr_lines if line.strip()]
    # Earlier tests posted /analyze and uploaded to the bucket: each line carries its own thread's function.
    posts = [line for line in lines if '"POST /analyze' in line]
    uploads = [line for line in lines if "upload queued as job" in line]
    assert posts and uploads, "\n".join(lines[-20:])
    assert all("function_name=" not in line and "cold_start" not in line for line in posts), posts
    assert all("function_name=video-ai-dev-ingest" in line for line in uploads), uploads
    assert not [line for line in lines if "color_message" in line or "\x1b[" in line]
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
    # Every record starts with a timestamp in one format (tracebacks continue a record on lines of their own).
    starts = [line for line in lines if re.match(r"^\{|^\d{4}-", line)]
    assert len(starts) >= len(posts) + len(uploads)
    assert all(stamp.match(line) for line in starts), [line for line in starts if not stamp.match(line)][:5]


def test_sigterm_stops_cleanly_and_frees_the_port(stack: ServeProcess) -> None:
    port = int(stack.info["api"].rsplit(":", 1)[1])
    moto_port = int(stack.info["s3"].rsplit(":", 1)[1])
    assert stack.terminate(timeout=30) == 0, stack.stderr_tail()
    for p in (port, moto_port):
        with socket.socket() as sock, pytest.raises(OSError):
            sock.settimeout(2)
            sock.connect(("127.0.0.1", p))
    assert stack.stderr_matching("stopped")
    signalled = stack.stderr_matching("received SIGTERM")
    assert signalled and all("function_name" not in line for line in signalled), signalled


# ---------------------------------------------------------------- the event-source pollers, in-process against moto


@pytest.fixture(scope="module")
def moto_stack() -> Iterator[tuple[Any, Any]]:
    from moto.server import ThreadedMotoServer

    from video_ai.adapters.aws import AwsClients
    from video_ai.local.functions import find_project_file
    from video_ai.local.resources import create_resources

    mp = pytest.MonkeyPatch()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(name, value)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        clients = AwsClients("us-east-1", endpoint_url=f"http://{host}:{port}")
        yield clients, create_resources(clients, find_project_file("template.yaml"), "pollers")
    finally:
        server.stop()
        mp.undo()


def _drain(sqs: Any, url: str, wait_s: int = 1) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                         WaitTimeSeconds=wait_s).get("Messages", [])
    for m in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return messages


def test_sqs_poller_honours_partial_batch_failures_and_the_dlq_redrive(moto_stack: tuple[Any, Any]) -> None:
    import threading

    from aws_lambda_powertools.utilities.parser.models import SqsModel

    from video_ai.local.functions import lambda_context
    from video_ai.local.pollers import SqsPoller

    clients, resources = moto_stack
    sqs = clients.sqs
    receives: dict[str, list[int]] = {}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        SqsModel.model_validate(event)  # the shape Lambda sends, by powertools' strict model
        assert context.get_remaining_time_in_millis() > 0
        assert context.invoked_function_arn.endswith(":function:video-ai-pollers-worker")
        failures = []
        for record in event["Records"]:
            receives.setdefault(record["body"], []).append(int(record["attributes"]["ApproximateReceiveCount"]))
            if record["body"] == "bad":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    stop = threading.Event()
    poller = SqsPoller("test-worker", sqs, resources.jobs_queue_url,
                       handler, lambda: lambda_context("worker", "pollers"), stop, batch_size=10,
                       retry_visibility_s=0)
    for body in ("good", "bad"):
        sqs.send_message(QueueUrl=resources.jobs_queue_url, MessageBody=body)
    poller.start()
    try:
        dead = wait_for(lambda: _drain(sqs, resources.jobs_dlq_url), 30, what="the failing record in the DLQ")
    finally:
        stop.set()
        assert poller.join(10)
    assert [m["Body"] for m in dead] == ["bad"]
    assert receives["good"] == [1]
    assert receives["bad"] == [1, 2, 3]  # maxReceiveCount 3 from template.yaml, then the DLQ
    attributes = sqs.get_queue_attributes(QueueUrl=resources.jobs_queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_sns_poller_retries_twice_then_sends_to_the_on_failure_queue(moto_stack: tuple[Any, Any]) -> None:
    import json
    import threading

    from aws_lambda_powertools.utilities.parser.models import SnsModel

    from video_ai.local.functions import lambda_context
    from video_ai.local.pollers import SnsAsyncPoller
    from video_ai.local.serve import subscribe_callback_queue

    clients, resources = moto_stack
    sqs = clients.sqs
    url, subscription = subscribe_callback_queue(sqs, clients.sns, resources.topic_arn, "pollers")
    calls: dict[str, int] = {}

    def handler(event: dict[str, Any], context: Any) -> None:
        SnsModel.model_validate(event)
        message = event["Records"][0]["Sns"]["Message"]
        calls[message] = calls.get(message, 0) + 1
        if message == "always-fails" or (message == "fails-once" and calls[message] == 1):
            raise RuntimeError(f"cannot deliver {message}")

    stop = threading.Event()
    poller = SnsAsyncPoller("test-callback", sqs, url, subscription, handler,
                            lambda: lambda_context("callback", "pollers"), stop,
                            on_failure_queue_url=resources.callback_dlq_url,
                            function_arn="arn:aws:lambda:us-east-1:123456789012:function:callback",
                            retry_delays_s=(0.1, 0.2))
    poller.start()
    try:
        for message in ("ok", "fails-once", "always-fails"):
            clients.sns.publish(TopicArn=resources.topic_arn, Message=message,
                                MessageAttributes={"type": {"DataType": "String", "StringValue": "job.succeeded"}})
        failed = wait_for(lambda: _drain(sqs, resources.callback_dlq_url), 30, what="the on-failure record")
    finally:
        stop.set()
        assert poller.join(10)
    assert calls == {"ok": 1, "fails-once": 2, "always-fails": 3}
    assert len(failed) == 1
    record = json.loads(failed[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["Records"][0]["Sns"]["Message"] == "always-fails"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
