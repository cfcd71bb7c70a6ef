"""Domain errors: adapters raise these, the API maps them to HTTP once, the worker to a job `error.code`."""

from __future__ import annotations


class VideoAIError(Exception):
    """Base of every error the service reports to a client.

    `permanent` errors end a job as `failed` at once; transient ones are retried (SQS redelivery).
    """

    code: str = "internal_error"
    http_status: int = 500
    permanent: bool = True

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(VideoAIError):
    code = "invalid_request"
    http_status = 422


class FeatureUnavailable(InvalidRequest):
    """A job asked for a feature this deployment cannot run (no analyzer registered for it)."""

    code = "feature_unavailable"


class ConfigError(VideoAIError):
    code = "invalid_config"


class NotFound(VideoAIError):
    code = "not_found"
    http_status = 404


class VideoNotFound(NotFound):
    """The source (file, URL, S3 object) does not exist."""


class JobNotFound(NotFound):
    code = "job_not_found"


class Conflict(VideoAIError):
    code = "conflict"
    http_status = 409


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class InvalidTransition(Conflict):
    """A conditional write refused a state change (the job moved on already)."""

    code = "invalid_transition"


class Unauthorized(VideoAIError):
    code = "unauthorized"
    http_status = 401


class ForbiddenAddress(VideoAIError):
    """A URL points at an address the service must never reach (SSRF guard)."""

    code = "forbidden_address"
    http_status = 422


class SourceTooLarge(VideoAIError):
    code = "source_too_large"
    http_status = 413


class UnsupportedMedia(VideoAIError):
    """The bytes are not a video container we can decode."""

    code = "unsupported_media"
    http_status = 415


class NoVideoStream(UnsupportedMedia):
    code = "no_video_stream"


class CorruptMedia(UnsupportedMedia):
    code = "corrupt_media"


class EmptyVideo(UnsupportedMedia):
    """A container with a video stream but no decodable frame (0-second video)."""

    code = "empty_video"


class DecodeTimeout(UnsupportedMedia):
    code = "decode_timeout"


class SourceChanged(VideoAIError):
    """The source object was overwritten after the job started: its segments would mix old and new bytes."""

    code = "source_changed"
    http_status = 409


class FetchFailed(VideoAIError):
    """The source could not be downloaded (unreachable host, 5xx); worth a retry."""

    code = "fetch_failed"
    http_status = 502
    permanent = False


class TransientError(VideoAIError):
    """A dependency (Qdrant, DynamoDB, SQS) failed in a way a retry may fix."""

    code = "transient_error"
    http_status = 503
    permanent = False


class IndexUnavailable(TransientError):
    code = "index_unavailable"


class JobBusy(TransientError):
    """Another run owns the job (a duplicate delivery of its message lost the race to start it): this copy of the
    message is kept for a later delivery instead of being deleted, which could delete the message itself."""

    code = "job_busy"


class RetriesExhausted(VideoAIError):
    code = "retries_exhausted"


class JobCancelled(VideoAIError):
    code = "cancelled"
