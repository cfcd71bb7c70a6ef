"""Smoke-run every function as deployed: `sam local invoke` and `sam local start-api` on what `sam build` made.

Called by scripts/lambda-local.sh (which builds the images and sets DOCKER_HOST, CONTAINERS_CONF and the OCI runtime
that runs each container as Lambda does). Everything the functions talk to runs here on 127.0.0.1: moto's server (the
template's table, queues, topic, bucket, and the secrets whose ARNs the template passes), a file server for the clip
and a Standard Webhooks receiver. Containers reach them through slirp4netns as 10.0.2.2 (the host's loopback).
Prints one line per function (`api: ok init 0.62 s invoke 0.03 s`) and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from standardwebhooks import Webhook

from video_ai.adapters.dynamodb_jobs import job_to_item
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.local.resources import create_resources, load_template
from video_ai.samples import make_demo_clip

ROOT = Path(__file__).resolve().parents[2]
HOST = "10.0.2.2"  # slirp4netns: the host's loopback as a container sees it
REGION = "us-east-1"
# The job, API key and tenant that the files in events/ name; the smoke run seeds them so each event means something.
SEED_JOB = "5b0e7c1a-3f2d-4e8b-9a61-0c4d2f7e8b19"
# The job events/sqs_dead_letter.json names: seeded as `processing`, as a worker that died on its last attempt left it.
DEAD_JOB = "9c41e6d2-0b7a-4f53-8e1d-2a6f3c5b7d90"
# A job its submitter died with between the record and the send: queued, never sent, created long ago.
UNSENT_JOB = "1f7d2c84-6a3e-4b95-8c20-7e5a9d3b1c46"
API_KEY = "dev-key"
TENANT = "default"
# The accepted job runs every feature on a clip with these words on screen and the JFK recording as its sound.
ALL_FEATURES = ["visual", "labels", "speech", "ocr"]
WRITTEN = "Quarterly results 2026"
SAID = ("fellow", "americans", "country")
# Which function each file in events/ belongs to (a new file must be added here: the run fails on an unknown one).
EVENT_FUNCTIONS = {
    "api_health.json": "ApiFunction",
    "api_get_job.json": "ApiFunction",
    "api_post_analyze.json": "ApiFunction",
    "sqs_job.json": "WorkerFunction",
    "sns_job_finished.json": "CallbackFunction",
    "sqs_upload.json": "IngestFunction",
    "sqs_dead_letter.json": "JobsDeadLetterFunction",
    "schedule_requeue.json": "JobsRequeueFunction",
}
SHORT = {"ApiFunction": "api", "IngestFunction": "ingest", "WorkerFunction": "worker", "CallbackFunction": "callback",
         "SearchFunction": "search", "JobsDeadLetterFunction": "dead-letter", "JobsRequeueFunction": "requeue"}
# The RIE's REPORT line; its Init Duration is not measured (~1 ms): the base image's bootstrap prints INIT_REPORT.
REPORT = re.compile(r"^REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: (?P<duration>[\d.]+) ms", re.M)
INIT_REPORT = re.compile(r"^INIT_REPORT Init Duration: (?P<init>[\d.]+) ms", re.M)
# Host paths podman itself puts into every container (its own per-container files), besides /tmp and a zip function's
# code at /var/task (how `sam local` mounts a zip package; Lambda unpacks it there, read-only).
PODMAN_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv", "/dev/shm"}


class SmokeFailure(Exception):
    """One check of the smoke run failed."""


@dataclass
class Invocation:
    function: str
    what: str
    init_s: float | None
    duration_s: float | None
    wall_s: float


@dataclass
class Smoke:
    sam: str
    template: Path
    run_dir: Path
    env_file: Path
    params: list[str]
    api_key: str = API_KEY
    suffix: str = ""
    invocations: list[Invocation] = field(default_factory=list)
    constraints_seen: int = 0

    # ------------------------------------------------------------ sam local invoke
    def invoke(self, function: str, event: dict[str, Any], what: str, timeout: float = 600) -> Any:
        path = self.run_dir / f"event-{len(self.invocations)}.json"
        path.write_text(json.dumps(event))
        start = time.monotonic()
        proc = subprocess.run(
            [self.sam, "local", "invoke", function, "-t", str(self.template), "-e", str(path), *self._common()],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        )
        wall = time.monotonic() - start
        (self.run_dir / f"invoke-{len(self.invocations)}-{SHORT[function]}{self.suffix}.log").write_text(proc.stderr)
        if proc.returncode != 0:
            raise SmokeFailure(f"sam local invoke {function} ({what}) exited {proc.returncode}: {_tail(proc.stderr)}")
        self.invocations.append(_invocation(function, what, proc.stderr, wall))
        self.check_constraints(function)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        try:
            response = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise SmokeFailure(f"{function} ({what}) returned no JSON: {proc.stdout[-500:]!r}") from None
        if isinstance(response, dict) and "errorType" in response:
            raise SmokeFailure(f"{function} ({what}) raised {response['errorType']}: {response.get('errorMessage')}")
        return response

    def _common(self) -> list[str]:
        return ["--env-vars", str(self.env_file), "--skip-pull-image", "--region", REGION,
                "--add-host", f"example.com:{HOST}", "--parameter-overrides", " ".join(self.params)]

    # ------------------------------------------------------------ Lambda's constraints, as the OCI runtime applied them
    def check_constraints(self, function: str) -> None:
        log = self.run_dir / "containers.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        new, self.constraints_seen = records[self.constraints_seen:], len(records)
        if not any(r["function"] == function for r in new):
            raise SmokeFailure(f"{function}: no container ran under the Lambda constraints (OCI runtime not in use?)")
        for record in new:
            memory = memory_size(record["function"])
            extra = set(record["bind_mounts"]) - PODMAN_FILES - {"/tmp", "/var/task"}
            if (record["uid"], record["readonly_root"], record["memory_mb"]) != (993, True, memory) or extra:
                raise SmokeFailure(f"container not constrained as Lambda's: {record} (MemorySize {memory})")

    # ------------------------------------------------------------ sam local start-api
    @contextmanager
    def start_api(self) -> Iterator[str]:
        port = _free_port()
        log = open(self.run_dir / "start-api.log", "w")  # noqa: SIM115 - closed below, after the process
        proc = subprocess.Popen(
            [self.sam, "local", "start-api", "-t", str(self.template), "--host", "127.0.0.1", "--port", str(port),
             *self._common()],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300  # it builds every function's emulation image first
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise SmokeFailure(f"sam local start-api exited {proc.returncode}: {_tail(_read(log.name))}")
                # A TCP connect, not a request: every request to start-api starts a function container.
                with socket.socket() as probe:
                    probe.settimeout(1)
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.5)
            else:
                raise SmokeFailure(f"sam local start-api did not listen within 300 s: {_tail(_read(log.name))}")
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()

    def http(self, base: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, float]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers={"x-api-key": self.api_key, "content-type": "application/json"})
        start = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        elapsed = time.monotonic() - start
        try:
            return status, json.loads(raw or b"null"), elapsed
        except ValueError:
            return status, raw.decode(errors="replace"), elapsed


def _invocation(function: str, what: str, logs: str, wall: float) -> Invocation:
    reports, inits = list(REPORT.finditer(logs)), list(INIT_REPORT.finditer(logs))
    init = float(inits[-1].group("init")) / 1000 if inits else None
    # The emulator starts the runtime on the first invoke, so its Duration holds the init phase too.
    duration = float(reports[-1].group("duration")) / 1000 - (init or 0.0) if reports else None
    return Invocation(function, what, init, duration, wall)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _read(path: str) -> str:
    return Path(path).read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@cache  # read for every container the run checks
def memory_size(function: str) -> int:
    template = load_template(ROOT / "template.yaml")
    size = template["Resources"][function]["Properties"]["MemorySize"]
    if isinstance(size, dict):  # !Ref WorkerMemorySize
        size = template["Parameters"][size["Ref"]]["Default"]
    return int(size)


# ---------------------------------------------------------------- loopback servers
@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Deliveries:
    """What the receiver verified: (webhook-id, body) per delivery."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.rejected = 0
        self.lock = threading.Lock()

    def server(self) -> ThreadingHTTPServer:
        from http.server import BaseHTTPRequestHandler

        deliveries = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = deliveries.verifier.verify(body, headers)
                except Exception:
                    with deliveries.lock:
                        deliveries.rejected += 1
                    self.send_response(400)
                else:
                    with deliveries.lock:
                        deliveries.items.append((headers["webhook-id"], payload))
                    self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [payload for _, payload in self.items if payload.get("job_id") == job_id]

    def messages_for(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(webhook-id, body) of each delivery for the job."""
        with self.lock:
            return [(msg_id, payload) for msg_id, payload in self.items if payload.get("job_id") == job_id]


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


# ---------------------------------------------------------------- events
def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return data


def sqs_event(body: str, source_arn: str) -> dict[str, Any]:
    event = load_event("sqs_job.json")
    record = event["Records"][0]
    record.update(body=body, messageId=str(uuid.uuid4()), eventSourceARN=source_arn,
                  md5OfBody=hashlib.md5(body.encode()).hexdigest())
    record["attributes"]["ApproximateReceiveCount"] = "1"
    return event


def sns_event(envelope: dict[str, Any]) -> dict[str, Any]:
    event = load_event("sns_job_finished.json")
    sns = event["Records"][0]["Sns"]
    sns.update(Message=envelope["Message"], MessageId=envelope["MessageId"], TopicArn=envelope["TopicArn"],
               Timestamp=envelope["Timestamp"])
    return event


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SmokeFailure(f"timed out waiting for {what}")
        time.sleep(0.2)


# ---------------------------------------------------------------- the run
def run(sam: str, run_dir: Path, template: Path, emulated: Path) -> tuple[list[Invocation], list[Invocation]]:
    functions = {name for name, resource in load_template(ROOT / "template.yaml")["Resources"].items()
                 if resource["Type"] == "AWS::Serverless::Function"}
    if functions != set(SHORT):
        raise SmokeFailure(f"the template's functions {sorted(functions)} are not the ones smoke.py runs: "
                           f"{sorted(SHORT)}")
    for name in sorted(p.name for p in (ROOT / "events").glob("*.json")):
        if name not in EVENT_FUNCTIONS:
            raise SmokeFailure(f"events/{name}: no function mapped to it in scripts/lambda-local/smoke.py")

    media = run_dir / "media"
    media.mkdir()
    make_demo_clip(media / "demo.mp4")
    make_words_clip(media / "words.mp4")
    webhook_secret = generate_secret()
    deliveries = Deliveries(webhook_secret)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        moto_port = moto._server.server_port  # type: ignore[union-attr]
        endpoint = f"http://127.0.0.1:{moto_port}"
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        names = create_resources(session, ROOT / "template.yaml", "dev", endpoint_url=endpoint)
        client = partial(session.client, endpoint_url=endpoint)
        sm = client("secretsmanager")
        arns = {
            "ApiKeysSecretArn": sm.create_secret(
                Name="video-ai/dev/api-keys",
                SecretString=json.dumps({hashlib.sha256(API_KEY.encode()).hexdigest(): TENANT}),
            )["ARN"],
            "WebhookSecretArn": sm.create_secret(Name="video-ai/dev/webhook", SecretString=webhook_secret)["ARN"],
            "QdrantApiKeySecretArn": sm.create_secret(Name="video-ai/dev/qdrant-api-key", SecretString="unused")["ARN"],
        }
        params = [f"{key}={value}" for key, value in arns.items()]
        params += ["Stage=dev", "QdrantUrl=http://qdrant.invalid:6333"]

        # What the finished-job topic publishes, captured as a subscriber would (the SNS event for the callback).
        sqs = client("sqs")
        capture = sqs.create_queue(QueueName="smoke-job-finished")["QueueUrl"]
        capture_arn = sqs.get_queue_attributes(QueueUrl=capture, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        client("sns").subscribe(TopicArn=names.topic_arn, Protocol="sqs", Endpoint=capture_arn)

        with (
            serving(ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(media)))) as files,
            serving(deliveries.server()) as receiver,
        ):
            clip_url = f"http://{HOST}:{files.server_address[1]}/demo.mp4"
            hook_url = f"http://{HOST}:{receiver.server_address[1]}/hook"
            env = {key: value for key, value in names.environment().items()}
            env["VIDEO_AI__AWS__REGION"] = REGION
            env["VIDEO_AI__QDRANT__BACKEND"] = "edge"  # the embedded engine, under the template's data dir in /tmp
            env_file = run_dir / "env.json"
            env_file.write_text(json.dumps({"Parameters": env}))
            # Not the functions' config but the machine around them: where AWS is, and that the clip server and the
            # receiver are on private addresses over plain http (the development profile allows both).
            runtime_config = json.loads((run_dir / "oci-lambda.json").read_text())
            runtime_config["env"] = {
                "AWS_ENDPOINT_URL": f"http://{HOST}:{moto_port}",
                "VIDEO_AI__AWS__ENDPOINT_URL": f"http://{HOST}:{moto_port}",
                "VIDEO_AI__PROFILE": "development",
                "VIDEO_AI__NETWORK__ALLOW_HTTP": "true",
                "VIDEO_AI__NETWORK__ALLOW_PRIVATE_ADDRESSES": "true",
            }
            (run_dir / "oci-lambda.json").write_text(json.dumps(runtime_config))
            smoke = Smoke(sam, template, run_dir, env_file, params)

            ddb = client("dynamodb")
            seeded = Job(job_id=SEED_JOB, tenant=TENANT, source=Source(url=clip_url), callback_url=hook_url)
            ddb.put_item(TableName=names.table_name, Item=job_to_item(seeded))
            s3 = client("s3")
            upload = load_event("sqs_upload.json")
            s3_record = json.loads(upload["Records"][0]["body"])["Records"][0]["s3"]
            s3.create_bucket(Bucket=s3_record["bucket"]["name"])
            key = urllib.parse.unquote_plus(s3_record["object"]["key"])
            s3.put_object(Bucket=s3_record["bucket"]["name"], Key=key, Body=(media / "demo.mp4").read_bytes())

            def job(job_id: str) -> dict[str, Any]:
                from video_ai.adapters.dynamodb_jobs import item_to_job

                item = ddb.get_item(TableName=names.table_name, Key={"job_id": {"S": job_id}}).get("Item")
                return item_to_job(item).model_dump(mode="json") if item else {}

            # ---- every file in events/, against the function it belongs to
            response = smoke.invoke("ApiFunction", load_event("api_health.json"), "events/api_health.json")
            _expect(response.get("statusCode") == 200, "GET /health", response)
            response = smoke.invoke("ApiFunction", load_event("api_get_job.json"), "events/api_get_job.json")
            _expect(response.get("statusCode") == 200 and json.loads(response["body"])["job_id"] == SEED_JOB,
                    "GET /jobs/{seeded job}", response)
            response = smoke.invoke("ApiFunction", load_event("api_post_analyze.json"), "events/api_post_analyze.json")
            _expect(response.get("statusCode") == 202, "POST /analyze (the seed's body)", response)
            drain(sqs, names.jobs_queue_url)  # its source is example.com: it is not run
            response = smoke.invoke("WorkerFunction", load_event("sqs_job.json"), "events/sqs_job.json")
            _expect(response == {"batchItemFailures": []}, "worker on events/sqs_job.json", response)
            done = job(SEED_JOB)
            _expect(done.get("status") == "succeeded" and done["frames_indexed"] > 0, "seeded job succeeded", done)
            response = smoke.invoke("CallbackFunction", load_event("sns_job_finished.json"),
                                    "events/sns_job_finished.json")
            wait_for("the seeded job's signed callback", lambda: deliveries.for_job(SEED_JOB))
            before = {item["S"] for item in _job_ids(ddb, names.table_name)}
            response = smoke.invoke("IngestFunction", upload, "events/sqs_upload.json")
            _expect(response == {"batchItemFailures": []}, "ingest on events/sqs_upload.json", response)
            created = {item["S"] for item in _job_ids(ddb, names.table_name)} - before
            _expect(len(created) == 1, "one job for the uploaded object", sorted(created))
            uploaded = job(created.pop())
            _expect((uploaded.get("source") or {}).get("s3", {}).get("key") == key, "the upload's job", uploaded)
            dead = Job(job_id=DEAD_JOB, tenant=TENANT, source=Source(url=clip_url), status=JobStatus.PROCESSING)
            ddb.put_item(TableName=names.table_name, Item=job_to_item(dead))
            dead_letter = load_event("sqs_dead_letter.json")
            response = smoke.invoke("JobsDeadLetterFunction", dead_letter, "events/sqs_dead_letter.json")
            _expect(response == {"batchItemFailures": []}, "dead-letter on events/sqs_dead_letter.json", response)
            ended = job(DEAD_JOB)
            _expect(ended.get("status") == "failed" and (ended.get("error") or {}).get("code") == "retries_exhausted",
                    "the dead-lettered job ended failed (retries_exhausted)", ended)
            drain(sqs, names.jobs_queue_url)
            unsent = job_to_item(Job(job_id=UNSENT_JOB, tenant=TENANT, source=Source(url=clip_url),
                                     created_at="2026-01-01T00:00:00.000Z"))
            ddb.put_item(TableName=names.table_name, Item={**unsent, "unsent": {"S": "queued"}})
            requeue = load_event("schedule_requeue.json")
            response = smoke.invoke("JobsRequeueFunction", requeue, "events/schedule_requeue.json")
            _expect(response == {"sent": 1} and job(UNSENT_JOB).get("enqueued_at"), "requeue sent the unsent job",
                    (response, job(UNSENT_JOB)))
            sent = wait_for("the unsent job's message", lambda: sqs.receive_message(
                QueueUrl=names.jobs_queue_url, MaxNumberOfMessages=1).get("Messages"))
            _expect(json.loads(sent[0]["Body"])["job_id"] == UNSENT_JOB, "the message names the unsent job", sent)
            drain(sqs, names.jobs_queue_url)
            drain(sqs, capture)

            # ---- the API over HTTP, then the worker and the callback on the job it accepted
            with smoke.start_api() as base:
                words_url = clip_url.replace("demo.mp4", "words.mp4")
                body = {"video_url": words_url, "callback_url": hook_url, "features": ALL_FEATURES}
                status, body, _ = smoke.http(base, "POST", "/analyze", body)
                _expect(status == 202 and body.get("status") == "queued", "POST /analyze over HTTP", (status, body))
                job_id = body["job_id"]
                status, body, _ = smoke.http(base, "GET", f"/jobs/{job_id}")
                _expect(status == 200 and body["status"] == "queued", "GET /jobs/{id} over HTTP", (status, body))
                messages = wait_for("the job's SQS message", lambda: sqs.receive_message(
                    QueueUrl=names.jobs_queue_url, MaxNumberOfMessages=1, AttributeNames=["All"]).get("Messages"))
                queue_arn = sqs.get_queue_attributes(QueueUrl=names.jobs_queue_url,
                                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                response = smoke.invoke("WorkerFunction", sqs_event(messages[0]["Body"], queue_arn),
                                        "the accepted job's SQS message")
                _expect(response == {"batchItemFailures": []}, "worker on the accepted job", response)
                status, body, _ = smoke.http(base, "GET", f"/jobs/{job_id}")
                _expect(status == 200 and body["status"] == "succeeded" and body["frames_indexed"] > 0,
                        "the accepted job succeeded, vectors written", (status, body))
                frames = body["frames_indexed"]
                _expect(body["features"] == ALL_FEATURES and not body.get("warnings"), "every feature ran, no warning",
                        {"features": body["features"], "warnings": body.get("warnings")})
                status, said, _ = smoke.http(base, "GET", f"/jobs/{job_id}/transcript?format=json")
                heard = " ".join(segment["text"] for segment in said.get("segments", [])).lower()
                _expect(status == 200 and all(word in heard for word in SAID), "the transcript (speech on the worker)",
                        (status, said))
                status, text, _ = smoke.http(base, "GET", f"/jobs/{job_id}/text")
                _expect(status == 200 and [line["text"] for line in text.get("items", [])] == [WRITTEN],
                        "the on-screen text (ocr on the worker)", (status, text))
                api_log = run_dir / "start-api.log"
                seen = api_log.stat().st_size
                status, hits, search_s = smoke.http(base, "POST", "/search",
                                                    {"frame": {"job_id": job_id, "index": 0}, "top_k": 3})
                search_logs = api_log.read_bytes()[seen:].decode(errors="replace")
                items = hits.get("items", []) if isinstance(hits, dict) else hits
                _expect(status == 200 and any(hit.get("job_id") == job_id for hit in items),
                        "POST /search finds the job's vectors (SearchFunction)", (status, hits))
                for words, kind in ((" ".join(SAID[:2]), "speech"), (WRITTEN, "ocr")):
                    status, hits, _ = smoke.http(base, "POST", "/search", {"text": words, "kinds": [kind]})
                    items = hits.get("items", []) if isinstance(hits, dict) else hits
                    _expect(status == 200 and any(hit.get("job_id") == job_id for hit in items),
                            f"POST /search {{text: {words!r}}} finds the {kind} moment", (status, hits))
                smoke.invocations.append(_invocation("SearchFunction", "POST /search over HTTP", search_logs, search_s))
                smoke.check_constraints("SearchFunction")
            envelope = json.loads(wait_for("the job-finished notification", lambda: sqs.receive_message(
                QueueUrl=capture, MaxNumberOfMessages=1).get("Messages"))[0]["Body"])
            smoke.invoke("CallbackFunction", sns_event(envelope), "the accepted job's SNS event")
            delivered = wait_for("the accepted job's signed callback", lambda: deliveries.for_job(job_id))
            _expect(delivered[0]["type"] == "job.succeeded" and deliveries.rejected == 0,
                    "the callback verifies with standardwebhooks", delivered)
            # POST /jobs/{id}/callback on the API function: the job-finished event again, and the callback function
            # sends the first message again (same webhook-id, same body; a new timestamp and signature).
            replay = load_event("api_get_job.json")
            replay["rawPath"] = replay["requestContext"]["http"]["path"] = f"/jobs/{job_id}/callback"
            replay["requestContext"]["http"]["method"] = "POST"
            replay["pathParameters"]["proxy"] = f"jobs/{job_id}/callback"
            response = smoke.invoke("ApiFunction", replay, "POST /jobs/{id}/callback (replay)")
            _expect(response.get("statusCode") == 202, "POST /jobs/{id}/callback", response)

            def replayed() -> dict[str, Any] | None:
                """The replay's envelope from the capture queue (the first notification may show up again there)."""
                for raw in sqs.receive_message(QueueUrl=capture, MaxNumberOfMessages=10).get("Messages", []):
                    sqs.delete_message(QueueUrl=capture, ReceiptHandle=raw["ReceiptHandle"])
                    envelope: dict[str, Any] = json.loads(raw["Body"])
                    if json.loads(envelope["Message"]).get("replay"):
                        return envelope
                return None

            envelope = wait_for("the replayed job-finished notification", replayed)
            smoke.invoke("CallbackFunction", sns_event(envelope), "the replayed SNS event")
            wait_for("the replayed callback", lambda: len(deliveries.for_job(job_id)) >= 2)
            sent = deliveries.messages_for(job_id)
            _expect(len(sent) == 2 and sent[0] == sent[1] and deliveries.rejected == 0,
                    "the replay is the first message again (webhook-id and body), verified", sent)
            say(f"job {job_id}: succeeded with {', '.join(ALL_FEATURES)}, {frames} vectors, transcript and on-screen "
                "text found by words, callback verified with standardwebhooks and replayed as the same message")

            # ---- the zip functions as deployed, on arm64 under qemu-user: each of their events once
            arm = Smoke(sam, emulated, run_dir, env_file, params, suffix="-arm64",
                        constraints_seen=smoke.constraints_seen)
            response = arm.invoke("ApiFunction", load_event("api_health.json"), "events/api_health.json (arm64)")
            _expect(response.get("statusCode") == 200, "GET /health on arm64", response)
            before = {item["S"] for item in _job_ids(ddb, names.table_name)}
            response = arm.invoke("IngestFunction", upload, "events/sqs_upload.json (arm64)")
            _expect(response == {"batchItemFailures": []}, "ingest on arm64", response)
            again = {item["S"] for item in _job_ids(ddb, names.table_name)} - before
            _expect(not again, "the same upload delivered again is the job it already started", sorted(again))
            response = arm.invoke("JobsRequeueFunction", requeue, "events/schedule_requeue.json again (arm64)")
            _expect(response == {"sent": 0}, "a job sent once is not sent again, on arm64", response)
            response = arm.invoke("JobsDeadLetterFunction", dead_letter, "events/sqs_dead_letter.json again (arm64)")
            _expect(response == {"batchItemFailures": []} and job(DEAD_JOB)["updated_at"] == ended["updated_at"],
                    "a job dead-lettered twice is left as it ended, on arm64", (response, job(DEAD_JOB)))
            # The seeded job's callback was delivered once already (and is not again): a copy of it under a new id,
            # without its delivery state or its first message (a new job has neither; the callback function would
            # send the kept message, which names the seeded job).
            arm_job = Job.model_validate(job(SEED_JOB)).model_copy(
                update={"job_id": str(uuid.uuid4()), "callback": None, "callback_message": None})
            ddb.put_item(TableName=names.table_name, Item=job_to_item(arm_job))
            event = load_event("sns_job_finished.json")
            message = json.loads(event["Records"][0]["Sns"]["Message"])
            message["job_id"] = message["data"]["job_id"] = arm_job.job_id
            event["Records"][0]["Sns"]["Message"] = json.dumps(message)
            arm.invoke("CallbackFunction", event, "events/sns_job_finished.json for another job (arm64)")
            wait_for("the callback from arm64", lambda: deliveries.for_job(arm_job.job_id))
            return smoke.invocations, arm.invocations
    finally:
        moto.stop()


def make_words_clip(path: Path) -> None:
    """A clip for every feature: a caption on screen over real speech (tests/fixtures/speech/NOTICE.md) from 0.5 s."""
    sys.path.insert(0, str(ROOT))  # tests.fixtures: the committed recording and the muxer the page test uses
    from tests.fixtures.speech_media import add_speech, load
    from video_ai.text_samples import Caption, TextShot, make_text_clip

    silent = path.with_name("words-silent.mp4")
    make_text_clip(silent, [TextShot(12, [Caption(WRITTEN, 0.08, 0.1, 34)])], size=(960, 540), fps=4)
    add_speech(silent, path, load(), 0.5)


def drain(sqs: Any, queue_url: str) -> None:
    """Delete every visible message (PurgeQueue may run once a minute per queue)."""
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _job_ids(ddb: Any, table: str) -> list[dict[str, str]]:
    items = ddb.scan(TableName=table, ProjectionExpression="job_id")["Items"]
    return [item["job_id"] for item in items]


def _expect(ok: bool, what: str, got: Any) -> None:
    if not ok:
        raise SmokeFailure(f"{what}: got {json.dumps(got, default=str)[:800]}")


def say(text: str) -> None:
    sys.stderr.write(f"lambda-local: {text}\n")


def summary(invocations: list[Invocation], emulated: list[Invocation]) -> list[str]:
    lines = []
    for function in SHORT:
        mine = [inv for inv in invocations if inv.function == function]
        if not mine:
            raise SmokeFailure(f"{function}: not run")
        parts = [f"{SHORT[function]}: ok", *_timings(mine), f"({len(mine)} run{'s' if len(mine) > 1 else ''},"
                 f" {memory_size(function)} MB)"]
        arm = [inv for inv in emulated if inv.function == function]
        if arm:
            parts += ["arm64 under qemu: ok", *_timings(arm)]
        lines.append(" ".join(parts))
    return lines


def _timings(invocations: list[Invocation]) -> list[str]:
    inits = [inv.init_s for inv in invocations if inv.init_s is not None]
    durations = [inv.duration_s for inv in invocations if inv.duration_s is not None]
    parts = []
    if inits:
        parts.append(f"init {statistics.median(inits):.2f} s")
    if durations:
        parts.append(f"invoke {statistics.median(durations):.2f} s")
    return parts


def image_sizes() -> dict[str, Any]:
    """Each function's image and the sizes of its layers (podman's view), for BENCHMARKS.md."""
    sizes: dict[str, Any] = {}
    for name in ("api", "ingest", "callback", "worker"):
        image = f"video-ai/{name}:local"
        size = subprocess.run(["podman", "image", "inspect", image, "--format", "{{.Size}}"],
                              capture_output=True, text=True)
        history = subprocess.run(["podman", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image],
                                 capture_output=True, text=True)
        if size.returncode == 0:
            sizes[name] = {"bytes": int(size.stdout.strip()),
                           "layers": [line.split("\t", 1) for line in history.stdout.splitlines()]}
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam", required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--template", type=Path, required=True, help="the built template the smoke run invokes")
    parser.add_argument("--emulated-template", type=Path, required=True, help="the arm64 build, for qemu-user")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/lambda-local.json")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
                      AWS_REGION=REGION, SAM_CLI_TELEMETRY="0")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        invocations, emulated = run(args.sam, args.run_dir, args.template, args.emulated_template)
        lines = summary(invocations, emulated)
    except (SmokeFailure, subprocess.TimeoutExpired) as err:
        say(f"FAILED: {err}")
        say(f"logs: {args.run_dir} (kept when KEEP_RUN_DIR=1)")
        return 1
    except Exception as err:  # the smoke run's own plumbing (moto, boto3): one line here, the traceback in the logs
        (args.run_dir / "smoke-error.txt").write_text(traceback.format_exc())
        say(f"FAILED: {type(err).__name__}: {err}")
        say(f"logs: {args.run_dir} (kept when KEEP_RUN_DIR=1)")
        return 1
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "invocations": [inv.__dict__ for inv in invocations], "emulated_arm64": [inv.__dict__ for inv in emulated],
        "images": image_sizes()}, indent=1))
    for line in lines:
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
