"""Observability: one catalogue of domain metrics with two sinks (CloudWatch EMF in Lambda, Prometheus in `serve`),
JSON logs carrying the job's context with secrets redacted, and X-Ray subsegments per pipeline stage.

Metric names are a closed catalogue (`CATALOGUE`): an unknown name, a `count` on a histogram or an unexpected label
set raises `UnknownMetric`, so a typo fails the first test that exercises it instead of silently creating a series
no dashboard reads. Label values are bounded: a value outside its label's known set is recorded as `other`.

Heavy or optional imports (prometheus_client, powertools Metrics/Tracer) happen inside the classes that need them,
so a Lambda only pays for its own sink.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TextIO

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from pydantic import SecretStr

from video_ai.domain.errors import VideoAIError
from video_ai.domain.models import FEATURES
from video_ai.domain.ports import Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Tracer
    from aws_lambda_powertools import Metrics as PowertoolsMetrics
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from video_ai.settings import Settings

# ---------------------------------------------------------------------------------------------------- catalogue

Kind = Literal["counter", "histogram"]

# Video work spans sub-second clips to the 15-minute Lambda limit (and longer in `serve`).
SECONDS_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)
# Video seconds per wall second: below 1 means the service falls behind real time.
REALTIME_FACTOR_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 50, 100, 200, 500)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One domain metric and how each sink names it."""

    name: str
    kind: Kind
    help: str
    prometheus_name: str  # counters without `_total`: prometheus_client appends it
    emf_name: str
    emf_unit: Literal["Count", "Seconds", "None"]
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


CATALOGUE: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("jobs_accepted", "counter", "Jobs accepted (POST /analyze, S3 uploads).",
                   "video_ai_jobs_accepted", "JobsAccepted", "Count"),
        MetricSpec("jobs_started", "counter", "Job processing attempts started by a worker.",
                   "video_ai_jobs_started", "JobsStarted", "Count"),
        MetricSpec("jobs_succeeded", "counter", "Jobs finished successfully.",
                   "video_ai_jobs_succeeded", "JobsSucceeded", "Count"),
        MetricSpec("jobs_failed", "counter", "Jobs finished failed, by error code.",
                   "video_ai_jobs_failed", "JobsFailed", "Count", labels=("error_code",)),
        MetricSpec("jobs_requeued", "counter", "Jobs found queued but never sent (their submitter died between the "
                   "record and the send) and sent by the requeue step.", "video_ai_jobs_requeued", "JobsRequeued",
                   "Count"),
        MetricSpec("jobs_dead_lettered", "counter", "Job messages taken from the jobs dead-letter queue (their job "
                   "ends failed unless it had ended).", "video_ai_jobs_dead_lettered", "JobsDeadLettered", "Count"),
        MetricSpec("jobs_reused", "counter", "Jobs answered from an earlier job's results for the same content.",
                   "video_ai_jobs_reused", "JobsReused", "Count"),
        MetricSpec("jobs_split", "counter", "Long jobs split into time segments processed in parallel.",
                   "video_ai_jobs_split", "JobsSplit", "Count"),
        MetricSpec("jobs_deleted", "counter", "Jobs deleted through the API.",
                   "video_ai_jobs_deleted", "JobsDeleted", "Count"),
        MetricSpec("frames_indexed", "counter", "Frames embedded and stored in the vector index.",
                   "video_ai_frames_indexed", "FramesIndexed", "Count"),
        MetricSpec("video_seconds_processed", "counter", "Seconds of video analysed by succeeded jobs.",
                   "video_ai_video_processed_seconds", "VideoSecondsProcessed", "Seconds"),
        MetricSpec("realtime_factor", "histogram", "Video seconds analysed per wall-clock second, per job.",
                   "video_ai_realtime_factor", "RealtimeFactor", "None", buckets=REALTIME_FACTOR_BUCKETS),
        MetricSpec("decode_seconds", "histogram", "Time spent decoding and sampling frames, per job.",
                   "video_ai_decode_seconds", "DecodeTime", "Seconds", buckets=SECONDS_BUCKETS),
        MetricSpec("embed_seconds", "histogram", "Time spent embedding frames, per job.",
                   "video_ai_embed_seconds", "EmbedTime", "Seconds", buckets=SECONDS_BUCKETS),
        MetricSpec("index_seconds", "histogram", "Time spent writing vectors to the index, per job.",
                   "video_ai_index_seconds", "IndexTime", "Seconds", buckets=SECONDS_BUCKETS),
        # One unlabelled pair per feature (not a `feature` label): they ride in the worker's one EMF flush.
        *(spec for feature in FEATURES for spec in (
            MetricSpec(f"analyzer_{feature}_seconds", "histogram",
                       f"Time the {feature} analyzer spent on a job (the shared decode excluded).",
                       f"video_ai_analyzer_{feature}_seconds", f"Analyzer{feature.capitalize()}Time", "Seconds",
                       buckets=SECONDS_BUCKETS),
            MetricSpec(f"analyzer_{feature}_items", "counter",
                       f"What the {feature} analyzer produced (frames indexed, frames labelled...).",
                       f"video_ai_analyzer_{feature}_items", f"Analyzer{feature.capitalize()}Items", "Count"),
        )),
        MetricSpec("job_seconds", "histogram", "Job latency from processing start to its terminal state.",
                   "video_ai_job_seconds", "JobLatency", "Seconds", buckets=SECONDS_BUCKETS),
        MetricSpec("queue_wait_seconds", "histogram", "Time a job message waited in the queue before a worker took it.",
                   "video_ai_queue_wait_seconds", "QueueWait", "Seconds", buckets=QUEUE_WAIT_BUCKETS),
        MetricSpec("callback_deliveries", "counter", "Callback delivery results, by outcome.",
                   "video_ai_callback_deliveries", "CallbackDeliveries", "Count", labels=("outcome",)),
        MetricSpec("config_reloads", "counter", "Configuration reloads, by result (ok or rejected).",
                   "video_ai_config_reloads", "ConfigReloads", "Count", labels=("result",)),
    )
}

OTHER = "other"
_FIXED_LABEL_VALUES: dict[str, frozenset[str]] = {
    # CallbackState.status values plus the two outcomes of a raised delivery (see video_ai.workers).
    "outcome": frozenset({"pending", "delivered", "failed", "gone", "retry", "refused"}),
    "result": frozenset({"ok", "rejected"}),
}


class UnknownMetric(ValueError):
    """A metric name, kind or label set that is not in CATALOGUE."""


def error_codes() -> frozenset[str]:
    """Every `code` of a VideoAIError subclass imported so far: the closed set of `error_code` label values."""
    codes: set[str] = set()
    pending: list[type[VideoAIError]] = [VideoAIError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return frozenset(codes)


def allowed_label_values(label: str) -> frozenset[str]:
    if label == "error_code":
        return error_codes()
    return _FIXED_LABEL_VALUES.get(label, frozenset())


def bounded_labels(spec: MetricSpec, labels: Mapping[str, str]) -> dict[str, str]:
    """Labels with any value outside its known set replaced by `other` (no job ids, URLs or free text)."""
    return {k: (v if v in allowed_label_values(k) else OTHER) for k, v in labels.items()}


def spec_for(name: str, kind: Kind, labels: Mapping[str, str]) -> MetricSpec:
    spec = CATALOGUE.get(name)
    if spec is None:
        raise UnknownMetric(f"unknown metric {name!r}: add it to CATALOGUE in video_ai/observability.py")
    if spec.kind != kind:
        verb = "count" if spec.kind == "counter" else "observe"
        raise UnknownMetric(f"metric {name!r} is a {spec.kind}: use metrics.{verb}()")
    if set(labels) != set(spec.labels):
        raise UnknownMetric(f"metric {name!r} takes labels {sorted(spec.labels)}, got {sorted(labels)}")
    return spec


# ---------------------------------------------------------------------------------------------------- Prometheus

_prometheus_lock = threading.Lock()


@dataclass(slots=True)
class _Collectors:
    counters: dict[str, Counter]
    histograms: dict[str, Histogram]


# One set of collectors per registry: prometheus_client refuses a second registration of a name
# ("Duplicated timeseries"), and tests and `serve` build several apps in one process.
_collectors_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Collectors] = weakref.WeakKeyDictionary()


def _existing(registry: CollectorRegistry, name: str) -> object:
    return getattr(registry, "_names_to_collectors", {}).get(name)


def _register(registry: CollectorRegistry) -> _Collectors:
    from prometheus_client import Counter, Histogram

    collectors = _Collectors({}, {})
    for name, spec in CATALOGUE.items():
        # A collector left by an earlier copy of this module (importlib.reload in a test) is reused.
        if spec.kind == "counter":
            found = _existing(registry, spec.prometheus_name + "_total")
            counter = found if isinstance(found, Counter) else Counter(
                spec.prometheus_name, spec.help, spec.labels, registry=registry)
            collectors.counters[name] = counter
        else:
            found = _existing(registry, spec.prometheus_name)
            histogram = found if isinstance(found, Histogram) else Histogram(
                spec.prometheus_name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)
            collectors.histograms[name] = histogram
    _preinitialise(collectors)
    return collectors


def _preinitialise(collectors: _Collectors) -> None:
    """Export 0 for every known label value, so rate() and alerts see a series before its first event."""
    metrics: dict[str, Counter | Histogram] = {**collectors.counters, **collectors.histograms}
    for name, metric in metrics.items():
        spec = CATALOGUE[name]
        if len(spec.labels) == 1:
            for value in sorted(allowed_label_values(spec.labels[0])):
                metric.labels(value)


class PrometheusMetrics:
    """Metrics port on prometheus_client: `video_ai_*` counters and histograms in `registry` (default: global)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = registry if registry is not None else REGISTRY
        with _prometheus_lock:
            collectors = _collectors_by_registry.get(self.registry)
            if collectors is None:
                collectors = _register(self.registry)
                _collectors_by_registry[self.registry] = collectors
        self._collectors = collectors

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        spec = spec_for(name, "counter", labels)
        counter = self._collectors.counters[name]
        (counter.labels(**bounded_labels(spec, labels)) if spec.labels else counter).inc(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        spec = spec_for(name, "histogram", labels)
        histogram = self._collectors.histograms[name]
        (histogram.labels(**bounded_labels(spec, labels)) if spec.labels else histogram).observe(value)


# ---------------------------------------------------------------------------------------------------- EMF

class EmfMetrics:
    """Metrics port on powertools Metrics (CloudWatch Embedded Metric Format), dimensions {service, stage}.

    Unlabelled metrics go to powertools' class-level store, which every `Metrics()` instance shares, so the handler's
    `@metrics.log_metrics` flushes them with its own. Labelled ones (error_code, outcome, result) need their own
    dimension set, so each is printed at once as a single-metric EMF document {service, stage, <label>}.
    Call `flush()` when no decorated handler runs (scripts).
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        service: str | None = None,
        stage: str | None = None,
        metrics: PowertoolsMetrics | None = None,
    ) -> None:
        from aws_lambda_powertools import Metrics as PowertoolsMetrics

        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "VideoAI"
        self.service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or "video-ai"
        self.stage = stage or os.environ.get("VIDEO_AI__STAGE") or "dev"
        self._metrics = metrics or PowertoolsMetrics(namespace=self.namespace, service=self.service)
        # Default dimensions live in the shared class-level store too, and survive each flush.
        self._metrics.set_default_dimensions(stage=self.stage)
        self._lock = threading.Lock()

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._add(spec_for(name, "counter", labels), value, labels)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._add(spec_for(name, "histogram", labels), value, labels)

    def flush(self) -> None:
        self._metrics.flush_metrics()

    def _add(self, spec: MetricSpec, value: float, labels: Mapping[str, str]) -> None:
        if spec.labels:
            from aws_lambda_powertools.metrics import single_metric

            dimensions = {"service": self.service, "stage": self.stage, **bounded_labels(spec, labels)}
            with single_metric(name=spec.emf_name, unit=spec.emf_unit, value=value,  # type: ignore[arg-type]
                               namespace=self.namespace, default_dimensions=dimensions):
                pass
            return
        with self._lock:
            self._metrics.add_metric(name=spec.emf_name, unit=spec.emf_unit, value=value)


def lambda_metrics(settings: Settings | None = None) -> Metrics:
    """The sink for Lambda functions (CloudWatch Embedded Metric Format)."""
    return EmfMetrics(stage=settings.stage if settings is not None else None)


def prometheus_metrics() -> Metrics:
    """The sink for `video-ai serve` and the API server (prometheus_client, global registry)."""
    return PrometheusMetrics()


# ---------------------------------------------------------------------------------------------------- redaction

REDACTED = "[REDACTED]"
_MIN_LITERAL_SECRET = 6  # shorter values would redact ordinary words
_literal_secrets: set[str] = set()
_secrets_lock = threading.Lock()

# Names that only ever carry a credential: redacted after `:` or `=`, quoted or not (HTTP header lines too).
_HEADER_KEYS = (
    r"proxy-authorization|authorization|x-api-key|api[-_]?key|apikey|x-amz-security-token|x-amz-signature|"
    r"x-amz-credential|x-goog-signature|x-goog-credential|webhook-signature|access[-_]?token|refresh[-_]?token|"
    r"id[-_]?token|client[-_]?secret|webhook[-_]?secrets?|aws_secret_access_key|secret[-_]?access[-_]?key|"
    r"set-cookie|cookie|key-pair-id"
)
# Ordinary words that also name credentials: redacted as `word=value` or as a quoted key (`"secret": ...`), not in
# prose such as "no webhook secret: set WEBHOOK_SECRET_ARN".
_WORD_KEYS = r"secrets?|token|password|passwd|credentials?|signature|sig"
_VALUE = (
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<scheme>(?:\\?[\"'])?(?:(?:Bearer|Basic|Token|Digest|ApiKey|AWS4-HMAC-SHA256)\s+)?)"
    r"(?P<value>(?<=\\\")(?:[^\"\\]|\\[^\"])*|(?<=\")[^\"]*|(?<=')[^']*|[^\s\"'\\,;&}\])]+)"
)
_NOT_AFTER = r"(?<![A-Za-z0-9_.-])"
_KEY_VALUE = re.compile(r"(?P<key>" + _NOT_AFTER + r"(?:" + _HEADER_KEYS + r")(?:\\?[\"'])?)" + _VALUE, re.IGNORECASE)
_QUOTED_WORD_VALUE = re.compile(
    r"(?P<key>\\?[\"'](?:" + _WORD_KEYS + r")\\?[\"'])" + _VALUE, re.IGNORECASE
)
_WORD_VALUE = re.compile(
    r"(?P<key>" + _NOT_AFTER + r"(?:" + _WORD_KEYS + r"))" + _VALUE.replace(r"[:=]", "="), re.IGNORECASE
)
# ('authorization', 'Bearer x') tuples, as in a repr of a header list.
_HEADER_TUPLE = re.compile(
    r"(?P<key>(?P<q>[\"'])(?:" + _HEADER_KEYS + r")(?P=q)\s*,\s*b?(?P<q2>[\"']))(?P<value>[^\"']*)",
    re.IGNORECASE,
)
# Presigned/signed URLs (S3 SigV4 and SigV2, CloudFront, GCS, Azure SAS, token-in-query): the whole query goes.
_SIGNED_URL = re.compile(
    r"(?P<base>[a-z][a-z0-9+.-]*://[^\s?#\"'<>\\]+)\?(?P<query>[^\s#\"'<>\\]*"
    r"(?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|x-goog-signature|key-pair-id|"
    r"(?<=[?&;])sig|(?<=[?&;])token|access_token|api[-_]?key)=[^\s#\"'<>\\]*)",
    re.IGNORECASE,
)
_QUERY_PARAM = re.compile(r"(?P<key>[?&;](?:key|sig|token)=)[^&#\s\"'<>\\]+", re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)[A-Za-z0-9._~+/=-]{6,}")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def register_secret(*values: str | SecretStr | None) -> None:
    """Redact these exact values from every log line from now on (API keys, webhook secrets, tokens)."""
    with _secrets_lock:
        for value in values:
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(raw, str) and len(raw) >= _MIN_LITERAL_SECRET:
                _literal_secrets.add(raw)


def redact(text: str) -> str:
    """`text` with secrets, API keys, credentials and signed-URL query strings replaced by [REDACTED]."""
    with _secrets_lock:
        literals = sorted(_literal_secrets, key=len, reverse=True)
    for literal in literals:
        if literal in text:
            text = text.replace(literal, REDACTED)
    text = _SIGNED_URL.sub(lambda m: f"{m['base']}?{REDACTED}", text)
    text = _QUERY_PARAM.sub(lambda m: m["key"] + REDACTED, text)
    text = _WHSEC.sub("whsec_" + REDACTED, text)
    text = _AWS_KEY_ID.sub(REDACTED, text)
    text = _HEADER_TUPLE.sub(lambda m: m["key"] + REDACTED, text)
    for pattern in (_KEY_VALUE, _QUOTED_WORD_VALUE, _WORD_VALUE):
        text = pattern.sub(_replace_value, text)
    return _BEARER.sub(lambda m: m["key"] + REDACTED, text)


def _replace_value(match: re.Match[str]) -> str:
    if not match["value"] or REDACTED[:-1] in match["value"]:
        return match[0]
    return match["key"] + match["sep"] + match["scheme"] + REDACTED


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_any(v) for v in value)
    return value


_STANDARD_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Handler filter: redacts the message, its arguments, extra fields and the exception text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping):
            record.msg = _redact_any(record.msg)
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = f"{record.msg} {record.args}"
            record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_RECORD_ATTRS:
                setattr(record, key, _redact_any(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# ---------------------------------------------------------------------------------------------------- log context

_log_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "video_ai_log_context", default=MappingProxyType({})
)


class LogContext:
    """Keys (job_id, tenant, request_id) added to every log line of the current thread/task; `LoggerLike` too."""

    def append_keys(self, **keys: Any) -> None:
        _log_context.set({**_log_context.get(), **keys})

    def remove_keys(self, keys: list[str]) -> None:
        current = dict(_log_context.get())
        for key in keys:
            current.pop(key, None)
        _log_context.set(current)

    def current(self) -> dict[str, Any]:
        return dict(_log_context.get())

    @contextmanager
    def bind(self, **keys: Any) -> Iterator[None]:
        token = _log_context.set({**_log_context.get(), **keys})
        try:
            yield
        finally:
            _log_context.reset(token)


log_context = LogContext()


class ContextFilter(logging.Filter):
    """Handler filter: copies the LogContext keys onto the record (explicit `extra=` wins); drops uvicorn's
    `color_message` (the message again, with ANSI colour escapes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        for key, value in _log_context.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


# ---------------------------------------------------------------------------------------------------- formatters

class RedactingJsonFormatter(LambdaPowertoolsFormatter):
    """powertools' JSON log format, with a last redaction pass over the whole line (exception text included).

    `keys_per_thread`: the keys powertools appends (the Lambda context from `inject_lambda_context`, `append_keys`)
    go to this thread's LogContext instead of the formatter, which every thread shares. A Lambda runs one invocation
    at a time, so there the shared keys are right (and the worker's decode thread inherits them); `serve` runs four
    functions and the API on threads of one process, where shared keys tag a line with another thread's function.
    """

    def __init__(self, *args: Any, keys_per_thread: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys_per_thread = keys_per_thread

    def append_keys(self, **additional_keys: Any) -> None:
        if self.keys_per_thread:
            log_context.append_keys(**additional_keys)
        else:
            super().append_keys(**additional_keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        if self.keys_per_thread:
            log_context.remove_keys(list(keys))
        else:
            super().remove_keys(keys)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingTextPowertoolsFormatter(RedactingJsonFormatter):
    """powertools' key handling with `RedactingTextFormatter`'s lines: `serve` with `logging.json: false` prints one
    format for its own lines and the functions' lines alike."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._text = RedactingTextFormatter()

    def format(self, record: logging.LogRecord) -> str:
        return self._text.format(record)


class RedactingTextFormatter(logging.Formatter):
    """`time level logger: message [key=value ...]` for humans, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_RECORD_ATTRS}
        if extras:
            line += " [" + " ".join(f"{k}={v}" for k, v in extras.items()) + "]"
        return redact(line)


_HANDLER_MARK = "_video_ai_handler"


def configure_logging(
    settings: Settings, stream: TextIO | None = None, *, service: str = "video-ai"
) -> logging.Handler:
    """Root logging for `serve` and the CLI: one stderr handler, JSON (or text) lines with the LogContext keys
    (job_id, tenant, request_id) and every secret redacted. Idempotent: replaces the handler it installed before."""
    register_secret(settings.qdrant.api_key)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if settings.logging.json_logs:
        handler.setFormatter(RedactingJsonFormatter(service=service, stage=settings.stage, utc=True,
                                                    use_rfc3339=True, json_default=str))
    else:
        handler.setFormatter(RedactingTextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.logging.level)
    return handler


def lambda_logger(service: str | None = None, level: str | None = None, *, stream: TextIO | None = None,
                  keys_per_thread: bool = False, json_logs: bool = True) -> Logger:
    """powertools Logger for a Lambda handler: redacting JSON formatter, and the `video_ai` library loggers routed
    through it so their lines are JSON and carry the handler's keys (job_id, tenant, function_request_id).

    The first Logger built for a service fixes its handler and formatter for every later one (powertools shares
    them): `serve` builds it first, with `keys_per_thread` and its stream and format. Timestamps are RFC 3339 in
    UTC, as `configure_logging` writes them, so one stream never mixes two formats."""
    from aws_lambda_powertools import Logger

    formatter_class = RedactingJsonFormatter if json_logs else RedactingTextPowertoolsFormatter
    formatter = formatter_class(json_default=str, utc=True, use_rfc3339=True)
    logger = Logger(service=service, level=level, logger_formatter=formatter, stream=stream)
    # Only now: `service` (appended while the Logger was built) belongs on every thread's lines.
    formatter.keys_per_thread = keys_per_thread
    handler = logger.registered_handler
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    library = logging.getLogger("video_ai")
    for old in [h for h in library.handlers if getattr(h, _HANDLER_MARK, False)]:
        library.removeHandler(old)
    setattr(handler, _HANDLER_MARK, True)
    library.addHandler(handler)
    library.setLevel(logger.log_level)
    # Lambda's root handler would print each line a second time, as plain text.
    library.propagate = False
    return logger


# ---------------------------------------------------------------------------------------------------- requests

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """ASGI middleware: `request_id` (the caller's `x-request-id` if sane, else a new one) on every log line of the
    request, echoed in the response's `x-request-id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Any) -> None:
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        with log_context.bind(request_id=request_id):
            await self.app(scope, receive, send_with_id)


# ---------------------------------------------------------------------------------------------------- tracing

class XRayTracing:
    """Tracing port on powertools Tracer: one X-Ray subsegment `## <stage>` per span (a no-op outside Lambda)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        if tracer is None:
            from aws_lambda_powertools import Tracer

            tracer = Tracer()
        self._tracer = tracer

    @contextmanager
    def span(self, name: str) -> Iterator[Any]:
        with self._tracer.provider.in_subsegment(name=f"## {name}") as subsegment:
            subsegment.put_annotation("stage", name)
            yield subsegment


def emf_documents(text: str) -> list[dict[str, Any]]:
    """The EMF JSON documents among printed lines (tests, local debugging)."""
    docs: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "CloudWatchMetrics" in doc.get("_aws", {}):
            docs.append(doc)
    return docs


__all__ = [
    "CATALOGUE",
    "ContextFilter",
    "EmfMetrics",
    "LogContext",
    "MetricSpec",
    "PrometheusMetrics",
    "RedactingFilter",
    "RedactingJsonFormatter",
    "RedactingTextFormatter",
    "RequestIdMiddleware",
    "UnknownMetric",
    "XRayTracing",
    "configure_logging",
    "emf_documents",
    "lambda_logger",
    "lambda_metrics",
    "log_context",
    "prometheus_metrics",
    "redact",
    "register_secret",
]
