"""`video-ai serve`: the whole stack on this machine, no Docker.

moto's server stands in for DynamoDB, SQS, SNS and S3 (resources created from template.yaml's own properties);
uvicorn serves the API function's FastAPI app; pollers stand in for Lambda's event source mappings and feed the real
handler modules the real event shapes; the embedded Qdrant engine and the model live under the data dir. All the
handlers share one `Runtime` (one index, one model session). The config file is watched and hot-reloaded.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from video_ai.data_dir_lock import DataDirLock, Owner
from video_ai.domain.errors import ConfigError, VideoAIError
from video_ai.settings import DEFAULT_CONFIG_PATH, Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from video_ai.api.app import ApiContext
    from video_ai.local.durable import DurableState, HeldMessage
    from video_ai.local.pollers import SnsAsyncPoller, SqsPoller
    from video_ai.local.resources import LocalResources
    from video_ai.runtime import Runtime

logger = logging.getLogger("video_ai.serve")

DEV_TENANT = "dev"
ALLOW_REMOTE_ENV = "VIDEO_AI_SERVE_ALLOW_REMOTE"
WORKERS_ENV = "VIDEO_AI_SERVE_WORKERS"
DEFAULT_WORKERS = 2
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Real credentials must never reach moto's clients (or, by a mistake, AWS).
CLEARED_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")
ENDPOINT_ENV = "VIDEO_AI__AWS__ENDPOINT_URL"
STOP_TIMEOUT_S = 10.0
CALLBACK_VISIBILITY_S = 900
STATE_DIR = "serve"
READY_TIMEOUT_S = 30.0
# How often `serve` looks for jobs left queued and never sent (JobsRequeueFunction's schedule on AWS is 5 minutes).
REQUEUE_EVERY_S = 60.0


class ServeError(Exception):
    """A start-up failure reported as one line with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# ---------------------------------------------------------------- small helpers


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_config_path(config_path: Path | None) -> Path | None:
    """The file `load_settings` reads: --config, else $VIDEO_AI_CONFIG, else config/config.yml if present."""
    if config_path is not None:
        return config_path
    if os.environ.get("VIDEO_AI_CONFIG"):
        return Path(os.environ["VIDEO_AI_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """A secret persisted under the data dir (mode 0600), so it is stable across restarts."""
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    os.replace(tmp, path)
    return value


def _key_from_file(path: str | None) -> str | None:
    """A key shared through a file (docker-compose mounts one for `serve` and Prometheus)."""
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"VIDEO_AI_DEV_API_KEY_FILE: cannot read {path}: {err.strerror}") from None
    if len(value) < 16:
        raise ConfigError(f"VIDEO_AI_DEV_API_KEY_FILE: {path} must hold a key of at least 16 characters")
    return value


def dev_credentials(data_dir: Path) -> tuple[str, list[str]]:
    """The development API key and webhook secrets: from the environment (VIDEO_AI_DEV_API_KEY[_FILE],
    VIDEO_AI_WEBHOOK_SECRETS), else generated once per data dir and kept under `<data_dir>/keys/`."""
    from video_ai.adapters.webhook_sender import generate_secret
    from video_ai.api.auth import generate_key
    from video_ai.runtime import _split_secrets

    keys = data_dir / "keys"
    api_key = os.environ.get("VIDEO_AI_DEV_API_KEY") or _key_from_file(os.environ.get("VIDEO_AI_DEV_API_KEY_FILE"))
    if not api_key:
        api_key = _read_or_create(keys / "dev_api_key", generate_key)
    raw = os.environ.get("VIDEO_AI_WEBHOOK_SECRETS")
    secrets = _split_secrets(raw) if raw else [_read_or_create(keys / "webhook_secret", generate_secret)]
    if not secrets:
        raise ConfigError("VIDEO_AI_WEBHOOK_SECRETS is set but holds no secret")
    return api_key, secrets


def worker_count(settings: Settings) -> int:
    raw = os.environ.get(WORKERS_ENV)
    if raw:
        try:
            count = int(raw)
        except ValueError:
            raise ConfigError(f"{WORKERS_ENV}: expected a whole number, got {raw!r}") from None
        if not 1 <= count <= 32:
            raise ConfigError(f"{WORKERS_ENV}: expected 1-32, got {count}")
        return count
    return DEFAULT_WORKERS


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the API socket before anything else starts, so a busy port fails at once and port 0 is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets whose proto
    # says TCP, and with Nagle on every keep-alive response waited out the client's delayed ACK: 44 ms per request
    # instead of 0.4 ms (measured: benchmarks/bench_page.py, BENCHMARKS.md "The page").
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # No SO_REUSEADDR: a port held by another `serve` must fail here, not be shared.
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ServeError(f"{host}:{port} is already in use (another `video-ai serve`?); "
                             f"stop it or pick another --port (0 picks a free one)") from None
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def _job_ids(body: str) -> list[str]:
    from video_ai.runtime import parse_job_message

    try:
        return [parse_job_message(body).job_id]
    except VideoAIError:
        return []


# ---------------------------------------------------------------- AWS resources in moto


def subscribe_callback_queue(sqs: SQSClient, sns: SNSClient, topic_arn: str, stage: str) -> tuple[str, str]:
    """SNS -> an SQS queue the callback poller reads (SNS pushes to Lambda; locally something must pull): the
    queue's URL and the subscription's ARN."""
    # Its message stays (invisible) until the asynchronous invocation ends, so a crash meanwhile redelivers it after
    # the restart; the timeout outlasts the callback function's attempts and their retry delays.
    url = sqs.create_queue(QueueName=f"video-ai-callback-invocations-{stage}",
                           Attributes={"VisibilityTimeout": str(CALLBACK_VISIBILITY_S)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True)
    return url, subscription["SubscriptionArn"]


# ---------------------------------------------------------------- settings


@dataclass(slots=True)
class Injected:
    """What `serve` adds to whatever the config file says (kept across reloads)."""

    resources: LocalResources
    endpoint_url: str
    dev_key_hash: str

    def apply(self, settings: Settings) -> Settings:
        aws = settings.aws.model_copy(update={"endpoint_url": self.endpoint_url, **self.resources.aws_settings()})
        api = settings.api.model_copy(update={
            "api_key_hashes": {**settings.api.api_key_hashes, self.dev_key_hash: DEV_TENANT},
        })
        return settings.model_copy(update={"aws": aws, "api": api})


def load_serve_settings(config_path: Path | None) -> Settings:
    """Config file + environment, switched to the development profile (plain http and loopback allowed)."""
    return load_settings(config_path).development()


# ---------------------------------------------------------------- logging


def setup_logging(settings: Settings) -> None:
    """Logs go to stderr (stdout carries only the ready lines); powertools' loggers included."""
    from video_ai import observability

    configure = getattr(observability, "configure_logging", None)
    if callable(configure):
        configure(settings, stream=sys.stderr)
    else:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    # moto's request log and botocore's credential notice would drown the service's own lines.
    for noisy in ("werkzeug", "botocore.credentials"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    set_log_level(settings.logging.level)
    # The handler modules build `Logger()` for the same service; the first one built picks the stream, the format and
    # the formatter for all: keys per thread, since four functions and the API share this process.
    from video_ai.observability import lambda_logger

    lambda_logger(service=os.environ["POWERTOOLS_SERVICE_NAME"], level=settings.logging.level, stream=sys.stderr,
                  keys_per_thread=True, json_logs=settings.logging.json_logs)


def _redact_in_logs(*secrets: str) -> None:
    from video_ai import observability

    register = getattr(observability, "register_secret", None)
    if callable(register):
        register(*secrets)


def set_log_level(level: str) -> None:
    logging.getLogger().setLevel(level)
    logging.getLogger("video_ai").setLevel(level)
    # uvicorn sets its own loggers' levels at start; keep them in step.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).setLevel(level)
    service = os.environ.get("POWERTOOLS_SERVICE_NAME")
    if service:
        logging.getLogger(service).setLevel(level)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the life of `serve` (boto3 and powertools read them) and restore them afterwards."""
    # Also restored: what `serve` removes or sets later (the moto endpoint is known only once moto is up).
    saved = {k: os.environ.get(k) for k in (*values, *CLEARED_ENV, ENDPOINT_ENV)}
    for key in CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------- the stack


class LocalStack:
    """Everything `serve` runs, started in order and stopped in reverse with bounded waits."""

    def __init__(self, host: str, sock: socket.socket, config_path: Path | None, settings: Settings) -> None:
        self.host = host
        self.sock = sock
        self.config_path = resolve_config_path(config_path)
        self.file_settings = settings
        self.stop_event = threading.Event()
        self.poll_stop = threading.Event()
        self.moto: Any = None
        self.durable: DurableState | None = None
        self.runtime: Runtime | None = None
        self.api_ctx: ApiContext | None = None
        self.injected: Injected | None = None
        self.pollers: list[SqsPoller | SnsAsyncPoller] = []
        self.uvicorn: Any = None
        self.uvicorn_thread: threading.Thread | None = None
        self.reloader: Any = None
        self.api_key = ""
        self.webhook_secrets: list[str] = []
        self.moto_url = ""

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.server import ThreadedMotoServer

        from video_ai.adapters.aws import AwsClients
        from video_ai.api.auth import hash_key
        from video_ai.local.durable import DurableState
        from video_ai.local.functions import find_project_file
        from video_ai.local.resources import create_resources
        from video_ai.observability import prometheus_metrics
        from video_ai.runtime import Runtime, Secrets, install_runtime

        settings = self.file_settings
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.api_key, self.webhook_secrets = dev_credentials(data_dir)
        template = find_project_file("template.yaml")

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_host, moto_port = self.moto.get_host_and_port()
        self.moto_url = f"http://{moto_host}:{moto_port}"
        os.environ[ENDPOINT_ENV] = self.moto_url  # for anything that loads settings afresh
        settings = settings.model_copy(update={"aws": settings.aws.model_copy(update={"endpoint_url": self.moto_url})})

        # Before any resource exists: every change moto applies from now on is on disk before it answers.
        self.durable = DurableState(data_dir / STATE_DIR, DEFAULT_ACCOUNT_ID, settings.aws.region)
        self.durable.install()
        clients = AwsClients.from_settings(settings.aws)
        resources = create_resources(clients, template, settings.stage)
        subscription = subscribe_callback_queue(clients.sqs, clients.sns, resources.topic_arn, settings.stage)
        restored = self.durable.restore()
        logger.info("state restored in %.2f s: %d items, %d messages, %d objects", restored.seconds, restored.items,
                    restored.messages, restored.objects)
        self.injected = Injected(resources=resources, endpoint_url=self.moto_url, dev_key_hash=hash_key(self.api_key))
        settings = self.injected.apply(settings)

        self.runtime = Runtime(settings, secrets=Secrets(webhook=list(self.webhook_secrets)), clients=clients,
                               metrics=prometheus_metrics(), allow_local_files=False)
        self.runtime.webhook_sender()  # a malformed VIDEO_AI_WEBHOOK_SECRETS fails now, not at the first callback
        # Before any handler module is imported: their bootstraps then pick up this runtime.
        install_runtime(self.runtime)
        self._settle_held(restored.held, resources)
        self._announce_finished(clients, resources, subscription[0])
        self._recover_jobs(resources)
        self._start_api()
        self._start_pollers(clients, resources, settings, subscription)
        threading.Thread(target=self._requeue_periodically, name="requeue", daemon=True).start()
        self._start_reloader()
        self._wait_ready()
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    def _settle_held(self, held: Sequence[HeldMessage], resources: LocalResources) -> None:
        """Messages that were in flight at each of the last crashes (durable.INTERRUPTED_LIMIT of them in a row) go to
        their DLQ instead of bringing `serve` down once more: most likely their job is what crashes it (a decoder
        crash, the OOM killer). A job's own message ends the job `failed` (retries_exhausted), announced, first."""
        from video_ai.runtime import parse_job_message
        from video_ai.services.announce import give_up

        assert self.runtime is not None and self.durable is not None
        jobs_queue = resources.jobs_queue_url.rstrip("/").rsplit("/", 1)[-1]
        for message in held:
            job_id = ""
            if message.queue == jobs_queue:
                try:
                    job_id = parse_job_message(message.body).job_id
                except VideoAIError:
                    pass  # not a job message: nothing to settle but the message itself
                else:
                    give_up(job_id, f"serve stopped {message.interrupted} times in a row while running this job; "
                                    "its message is in the jobs dead-letter queue", self.runtime.jobs(),
                            self.runtime.notifier(), self.runtime.metrics)
            self.durable.dead_letter(message)
            logger.warning("a message of %s was in flight at the last %d crashes of serve: moved to its dead-letter "
                           "queue%s", message.queue, message.interrupted, f" (job {job_id})" if job_id else "")

    def _announce_finished(self, clients: Any, resources: LocalResources, subscription_url: str) -> None:
        """Publish the end of a finished job that was never announced and that nothing queued will announce: its
        worker message went to the DLQ, or it finished under an older `serve` (no outbox mark, no callback state).
        A job whose worker message is still queued is left to the worker, which publishes it on redelivery
        (services/announce.py); one whose notification waits in the callback queue is on its way already."""
        from video_ai.adapters.dynamodb_jobs import item_to_job
        from video_ai.services.announce import announce

        assert self.runtime is not None and self.durable is not None
        waiting = [body for url in (subscription_url, resources.jobs_queue_url)
                   for body in self.durable.pending_bodies(url.rstrip("/").rsplit("/", 1)[-1])]
        paginator = clients.dynamodb.get_paginator("scan")
        pages = paginator.paginate(
            TableName=resources.table_name, ConsistentRead=True,
            FilterExpression="#s IN (:ok, :failed) AND attribute_exists(callback_url) "
                             "AND attribute_not_exists(#cb) AND attribute_not_exists(announced_at)",
            ExpressionAttributeNames={"#s": "status", "#cb": "callback"},
            ExpressionAttributeValues={":ok": {"S": "succeeded"}, ":failed": {"S": "failed"}},
        )
        announced = 0
        for page in pages:
            for item in page.get("Items", []):
                job = item_to_job(item)
                if job.callback_url is None or any(job.job_id in body for body in waiting):
                    continue
                announce(job, self.runtime.jobs(), self.runtime.notifier())
                announced += 1
        if announced:
            logger.info("%d finished job(s) announced again: their end was recorded but never published", announced)

    def _recover_jobs(self, resources: LocalResources) -> None:
        """Before any worker or request runs: every run lease in the table was held by the previous process, dead now
        (one `serve` per data dir), so they go, or a redelivered job would wait out its owner's lease; and a job left
        queued and never sent (the previous process died between its record and its send) is sent, or only marked
        when its message was restored with the queue."""
        from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
        from video_ai.services.requeue import requeue_unsent

        assert self.runtime is not None and self.durable is not None
        jobs = self.runtime.jobs()
        if isinstance(jobs, DynamoDBJobRepository):
            cleared = jobs.clear_leases()
            if cleared:
                logger.info("%d job(s) were held by the previous process: their leases are cleared", cleared)
        queue_name = resources.jobs_queue_url.rstrip("/").rsplit("/", 1)[-1]
        pending = {job_id for body in self.durable.pending_bodies(queue_name) for job_id in _job_ids(body)}
        sent = requeue_unsent(jobs, self.runtime.queue(), older_than_s=0.0, metrics=self.runtime.metrics, skip=pending)
        if sent:
            logger.info("%d job(s) left queued and never sent by the previous process: sent now", len(sent))

    def _requeue_periodically(self) -> None:
        """JobsRequeueFunction's schedule: a send that failed under a request with an Idempotency-Key that the client
        never retried leaves its job queued, unsent."""
        from video_ai.workers import requeue_scheduled

        assert self.runtime is not None
        while not self.poll_stop.wait(REQUEUE_EVERY_S):
            try:
                requeue_scheduled(self.runtime)
            except Exception:
                logger.exception("the requeue step failed; it runs again in %.0f s", REQUEUE_EVERY_S)

    def _start_api(self) -> None:
        import uvicorn

        from video_ai.local.functions import load_function

        api = load_function("api")
        # The same FastAPI app the API function wraps with Mangum.
        app = api.asgi.app
        self.api_ctx = app.state.ctx
        config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="off",
                                log_level=self.file_settings.logging.level.lower(), timeout_graceful_shutdown=3)
        self.uvicorn = uvicorn.Server(config)
        self.uvicorn_thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                               name="uvicorn", daemon=True)
        self.uvicorn_thread.start()

    def _start_pollers(self, clients: Any, resources: LocalResources, settings: Settings,
                       subscription: tuple[str, str]) -> None:
        from video_ai.local.functions import lambda_context, load_function
        from video_ai.local.pollers import SnsAsyncPoller, SqsPoller

        stage, region = settings.stage, settings.aws.region
        subscription_url, subscription_arn = subscription
        worker, ingest, callback = (load_function(n) for n in ("worker", "ingest", "callback"))

        def context_for(name: str) -> Callable[[], Any]:
            return lambda: lambda_context(name, stage, region)

        for i in range(worker_count(settings)):
            self.pollers.append(SqsPoller(f"worker-{i + 1}", clients.sqs, resources.jobs_queue_url, worker.handler,
                                          context_for("worker"), self.poll_stop, batch_size=1, region=region))
        self.pollers.append(SqsPoller("ingest", clients.sqs, resources.uploads_queue_url, ingest.handler,
                                      context_for("ingest"), self.poll_stop, batch_size=10, region=region))
        # JobsDeadLetterFunction: the ingest zip's second handler on the jobs DLQ (template.yaml).
        self.pollers.append(SqsPoller("jobs-dead-letter", clients.sqs, resources.jobs_dlq_url,
                                      ingest.dead_letter_handler, context_for("jobs-dead-letter"), self.poll_stop,
                                      batch_size=10, region=region))
        callback_ctx = lambda_context("callback", stage, region)
        self.pollers.append(SnsAsyncPoller(
            "callback", clients.sqs, subscription_url, subscription_arn,
            callback.handler, context_for("callback"), self.poll_stop,
            on_failure_queue_url=resources.callback_dlq_url, function_arn=callback_ctx.invoked_function_arn,
        ))
        for poller in self.pollers:
            poller.start()

    def _start_reloader(self) -> None:
        if self.config_path is None:
            logger.info("no config file: hot reload is off")
            return
        from video_ai.local.reload import ConfigReloader

        assert self.runtime is not None
        self.reloader = ConfigReloader(self.config_path, current=self.current_settings, build=self.build_settings,
                                       apply=self.apply_settings, metrics=self.runtime.metrics)
        self.reloader.start()

    def current_settings(self) -> Settings:
        assert self.runtime is not None
        return self.runtime.settings

    def build_settings(self) -> Settings:
        assert self.injected is not None
        return self.injected.apply(load_serve_settings(self.config_path))

    def apply_settings(self, settings: Settings) -> None:
        """Swap the running settings: the routes read `ctx.settings` per request, the workers per job."""
        from video_ai.api.auth import ApiKeyAuth

        assert self.runtime is not None and self.api_ctx is not None
        self.runtime.settings = settings
        self.api_ctx.settings = settings
        self.api_ctx.guard = self.runtime.guard()
        self.api_ctx.auth = ApiKeyAuth({**settings.api.api_key_hashes, **self.runtime.secrets.api_key_hashes})
        set_log_level(settings.logging.level)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (self.uvicorn is not None and self.uvicorn.started):
            if self.uvicorn_thread is None or not self.uvicorn_thread.is_alive():
                raise ServeError("the API server stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise ServeError(f"the API server did not start within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def _warm_up(self) -> None:
        """Build the model and open the index now rather than on the first job (the build is cached on disk)."""
        assert self.runtime is not None
        try:
            started = time.monotonic()
            self.runtime.embedder()
            self.runtime.index()
            logger.info("model and index ready in %.1f s", time.monotonic() - started)
        except Exception:
            logger.exception("warm-up failed; the first job will retry")
        self._sweep_orphans()

    def _sweep_orphans(self) -> None:
        """Vectors and moments of jobs with no record (an older `serve` lost its jobs on a crash; a DELETE that
        failed half-way) go now; until then search already skips them."""
        from video_ai.services.sweep_orphans import sweep_orphans

        assert self.api_ctx is not None and self.runtime is not None
        try:
            started = time.monotonic()
            swept = sweep_orphans(self.runtime.jobs(), self.api_ctx.index(), self.api_ctx.model(),
                                  self.api_ctx.moments())
            logger.info("orphan sweep: %d job(s) with vectors, %d with moments removed in %.2f s",
                        len(swept.frame_jobs), len(swept.moment_jobs), time.monotonic() - started)
        except Exception:
            logger.exception("the orphan sweep failed; search still skips orphans")

    @property
    def api_url(self) -> str:
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    def ready_lines(self) -> list[str]:
        return [
            f"api: {self.api_url}",
            f"s3: {self.moto_url}",
            f"api_key: {self.api_key}",
            f"webhook_secret: {self.webhook_secrets[0]}",
        ]

    def stop(self) -> bool:
        """Stop in reverse order, each part within a bound; True when everything stopped in time."""
        from video_ai.runtime import install_runtime

        clean = True
        if self.reloader is not None:
            clean &= bool(self.reloader.stop(2.0))
        if self.uvicorn is not None:
            self.uvicorn.should_exit = True
        self.poll_stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for poller in self.pollers:
            if not poller.join(max(0.1, deadline - time.monotonic())):
                logger.warning("%s still busy at shutdown; abandoning its invocation", poller.name)
                clean = False
        if self.uvicorn_thread is not None:
            self.uvicorn_thread.join(5.0)
            if self.uvicorn_thread.is_alive():
                self.uvicorn.force_exit = True
                self.uvicorn_thread.join(2.0)
                clean &= not self.uvicorn_thread.is_alive()
        self.sock.close()
        if self.moto is not None:
            try:
                self.moto.stop()
            except Exception:
                logger.exception("stopping moto failed")
        if self.durable is not None:
            self.durable.close()
        if self.runtime is not None:
            try:
                self.runtime.close()  # flushes the embedded index
            except Exception:
                logger.exception("closing the index failed")
                clean = False
            install_runtime(None)
        return clean


def serve(host: str = "127.0.0.1", port: int = 8000, config_path: Path | None = None,
          *, allow_remote: bool | None = None) -> int:
    """Run the local stack until Ctrl-C / SIGTERM; print the ready lines on stdout; return the exit code.

    Binds loopback only unless `allow_remote` (or VIDEO_AI_SERVE_ALLOW_REMOTE=1, for a container) says otherwise.
    A bad config raises ConfigError (the CLI prints one line and exits 2); a busy port returns 1 after one line; a data
    dir held by another process (its embedded index has one writer) raises DataDirBusy (one line, exit 14).
    """
    remote_ok = _truthy(os.environ.get(ALLOW_REMOTE_ENV)) if allow_remote is None else allow_remote
    if not is_loopback(host) and not remote_ok:
        raise ConfigError(f"--host {host}: `video-ai serve` listens on loopback only (127.0.0.1); "
                          f"set {ALLOW_REMOTE_ENV}=1 to bind another address (inside a container)", field="host")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0-65535", field="port")
    settings = load_serve_settings(config_path)  # a bad config fails here, before anything starts
    worker_count(settings)
    # The embedded engine has one writer: a second `serve` (or a CLI command) on this data dir must not start.
    lock = DataDirLock(settings.data_dir, "video-ai serve") if settings.qdrant.backend == "edge" else None
    if lock is not None:
        lock.acquire()  # DataDirBusy: one line naming the holder, exit 14
    try:
        return _serve_locked(host, port, config_path, settings, lock)
    finally:
        if lock is not None:
            lock.release()


def _serve_locked(host: str, port: int, config_path: Path | None, settings: Settings, lock: DataDirLock | None) -> int:

    env = {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": settings.aws.region,
        "AWS_REGION": settings.aws.region,
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "video-ai"),
        "POWERTOOLS_METRICS_NAMESPACE": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "video-ai"),
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines would land on stdout; `serve` exports Prometheus instead
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    with _environment(env):
        setup_logging(settings)
        try:
            sock = bind_socket(host, port)
        except ServeError as err:
            sys.stderr.write(f"video-ai: error: {err.message}\n")
            return err.exit_code
        stack = LocalStack(host, sock, config_path, settings)
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if stopping.is_set():
                return
            stopping.set()
            logger.info("received %s, stopping", signal.Signals(signum).name)
            stack.stop_event.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                stack.start()
            except ServeError as err:
                sys.stderr.write(f"video-ai: error: {err.message}\n")
                return err.exit_code
            if not stack.stop_event.is_set():
                _redact_in_logs(stack.api_key, *stack.webhook_secrets)
                if lock is not None:  # lets the CLI beside this `serve` find its API instead of the locked index
                    lock.publish(Owner(pid=os.getpid(), command="video-ai serve", api=stack.api_url,
                                       api_key=stack.api_key))
                sys.stdout.write("\n".join(stack.ready_lines()) + "\n")
                sys.stdout.flush()
                logger.info("ready: api on port %d, %d worker(s), data dir %s", stack.port,
                            sum(1 for p in stack.pollers if p.name.startswith("worker")),
                            stack.file_settings.data_dir)
            while not stack.stop_event.wait(0.5):
                if stack.uvicorn_thread is not None and not stack.uvicorn_thread.is_alive():
                    logger.error("the API server stopped unexpectedly")
                    return 1
            return 0
        finally:
            clean = stack.stop()
            logger.info("stopped%s", "" if clean else " (some work was abandoned)")
            leftovers = [t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
            if leftovers:
                logger.warning("threads still running at exit: %s", ", ".join(leftovers))
            # Everything is stopped; the interpreter's final collection of moto's and botocore's large object graphs
            # takes seconds here, and nothing in it needs a finaliser, so leave those objects to process exit.
            gc.freeze()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
