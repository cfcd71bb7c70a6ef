"""boto3 clients built lazily (never at import, so moto can start first) and SDK errors mapped to domain errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from video_ai.domain.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from video_ai.settings import AwsSettings

# Codes a retry can fix; botocore's own retries have already been spent when one reaches us.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Network-level failures: the request may not have reached AWS at all.
CONNECTION_ERRORS: tuple[type[BotoCoreError], ...] = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    HTTPClientError,
    ResponseStreamingError,
)


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def is_transient(err: BaseException) -> bool:
    """Throttling, 5xx and connection failures: worth a retry (SQS redelivery or the client's)."""
    if isinstance(err, CONNECTION_ERRORS):
        return True
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(err) in TRANSIENT_CODES or status >= 500
    return False


@contextmanager
def transient_errors(what: str) -> Iterator[None]:
    """Turn retryable SDK failures into TransientError; anything else (a bug, a missing table) propagates as is."""
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        if is_transient(err):
            detail = error_code(err) if isinstance(err, ClientError) else type(err).__name__
            raise TransientError(f"{what} failed ({detail}); retry later") from err
        raise


class AwsClients:
    """One boto3 session and its clients, each built on first use and then shared (boto3 clients are thread-safe)."""

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
        config: Config | None = None,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self._config = config or Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=20,
        )
        # Sessions are not thread-safe; the worker's prefetch thread and the main thread may both reach here.
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, aws: AwsSettings) -> AwsClients:
        return cls(aws.region, endpoint_url=aws.endpoint_url)

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                client = self._session.client(  # type: ignore[call-overload]
                    service, region_name=self.region, endpoint_url=self.endpoint_url, config=self._config
                )
                self._clients[service] = client
        return client

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs")
        return client

    @property
    def sns(self) -> SNSClient:
        client: SNSClient = self._client("sns")
        return client

    @property
    def s3(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client
