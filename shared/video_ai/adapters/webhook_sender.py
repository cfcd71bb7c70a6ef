"""Standard Webhooks signing and one pinned HTTP delivery attempt to a `callback_url`.

Signing uses the `standardwebhooks` library itself (`Webhook(secret).sign`), so what we send is by construction what
its `verify` accepts. Redirects are not followed: a 3xx is an answer like any other non-2xx (permanent), as
Svix/Stripe do, which also keeps a receiver from bouncing us to an address we would refuse.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import secrets as _secrets
import ssl
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from importlib import metadata

from standardwebhooks import Webhook

from video_ai.adapters.net_guard import PinnedClient, Resolver, check_url
from video_ai.domain.errors import ConfigError, FetchFailed
from video_ai.services.deliver_callback import DeliveryResult
from video_ai.settings import LimitsSettings, NetworkSettings, WebhookSettings

FIELD = "callback_url"
SECRET_PREFIX = "whsec_"


def _user_agent() -> str:
    try:
        return f"video-ai/{metadata.version('video-ai')}"
    except metadata.PackageNotFoundError:
        return "video-ai/0"


def generate_secret() -> str:
    """A new `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _validate_secret(secret: str) -> None:
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError("webhook secrets must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("a webhook secret is not valid base64 after 'whsec_'") from None
    if len(key) < 16:
        raise ConfigError("a webhook secret must hold at least 16 bytes")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">` keyed with the decoded secret."""
    return str(Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8")))


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per active secret, space-separated: receivers on the old or new secret both verify."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class WebhookSender:
    """Signs a payload and POSTs it once to a re-checked, pinned `callback_url`."""

    def __init__(
        self,
        secrets: Sequence[str],
        settings: WebhookSettings,
        network: NetworkSettings,
        limits: LimitsSettings,
        resolver: Resolver | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        exempt_endpoints: Collection[tuple[str, int]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ConfigError("at least one webhook secret is required")
        for secret in secrets:
            _validate_secret(secret)
        self._secrets = tuple(secrets)
        self._settings = settings
        self._network = network
        self._limits = limits
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._exempt = tuple(exempt_endpoints)
        self._clock = clock
        self._user_agent = _user_agent()

    def headers(self, body: bytes, msg_id: str, timestamp: int) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(self._secrets, msg_id, timestamp, body),
            "content-type": "application/json",
            "user-agent": self._user_agent,
        }

    def send(self, url: str, body: bytes, msg_id: str) -> DeliveryResult:
        """One attempt, `body` sent as given (a replay's bytes are the first delivery's). Refused URLs raise
        ForbiddenAddress / InvalidRequest; network trouble is a result."""
        import httpx

        try:
            target = check_url(
                url, self._network, self._limits, field=FIELD, resolver=self._resolver, exempt_endpoints=self._exempt
            )
        except FetchFailed as err:  # the name does not resolve (now): worth another try
            return DeliveryResult(status_code=None, error=err.message)
        now = self._clock()
        headers = self.headers(body, msg_id, int(now))
        timeout = self._settings.timeout_s
        try:
            with (
                PinnedClient(
                    connect_timeout_s=min(timeout, self._limits.connect_timeout_s),
                    read_timeout_s=timeout,
                    ssl_context=self._ssl_context,
                ) as client,
                client.stream("POST", target, headers=headers, content=body) as response,
            ):
                # The body is not read: a receiver must not be able to make us download anything.
                return DeliveryResult(
                    status_code=response.status_code,
                    retry_after_s=parse_retry_after(response.headers.get("retry-after"), now),
                )
        except httpx.TimeoutException as err:
            return DeliveryResult(status_code=None, error=f"timeout: {type(err).__name__}")
        except httpx.TransportError as err:
            return DeliveryResult(status_code=None, error=f"connection error: {type(err).__name__}: {err}"[:500])
