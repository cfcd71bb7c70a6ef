"""`VideoFetcher` for http(s) URLs (pinned, redirect-checked, size-capped streaming) and, for the CLI, local files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

from video_ai.adapters.net_guard import CheckedTarget, PinnedClient, Resolver, check_url
from video_ai.domain.errors import FetchFailed, InvalidRequest, SourceTooLarge, VideoNotFound
from video_ai.domain.models import Source
from video_ai.domain.ports import FetchedVideo, VideoFetcher
from video_ai.settings import LimitsSettings, NetworkSettings

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

FIELD = "video_url"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# The source refuses to give us the object: for the client it is as good as absent.
NOT_FOUND_STATUSES = frozenset({401, 403, 404, 410, 451})
# A retry later may succeed.
TRANSIENT_4XX = frozenset({408, 425, 429})
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


class HttpVideoFetcher:
    """Fetch `Source.url` (http(s), or a local path / file:// URL when `allow_local_files`); delegate `Source.s3`.

    HTTP statuses: 2xx streams; 401/403/404/410/451 -> VideoNotFound; 408/425/429 and 5xx -> FetchFailed (transient);
    other 4xx -> InvalidRequest (the URL as given cannot be fetched; retrying will not help); a redirect chain
    longer than `limits.max_redirects` -> InvalidRequest. Each redirect target is checked like the first URL.

    Local files are not copied: the returned path is the caller's file (outside `workdir`): only delete fetched
    files that live under `workdir`. The API must build this fetcher with `allow_local_files=False` (the default).
    """

    def __init__(
        self,
        network: NetworkSettings,
        limits: LimitsSettings,
        resolver: Resolver | None = None,
        s3_fetcher: VideoFetcher | None = None,
        *,
        allow_local_files: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        exempt_endpoints: Collection[tuple[str, int]] = (),
        chunk_size: int = 1024 * 1024,
    ) -> None:
        self._network = network
        self._limits = limits
        self._resolver = resolver
        self._s3_fetcher = s3_fetcher
        self._allow_local_files = allow_local_files
        self._ssl_context = ssl_context
        self._exempt = tuple(exempt_endpoints)
        self._chunk_size = chunk_size

    def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
        """Bring the source to a local file; raise VideoNotFound, ForbiddenAddress, SourceTooLarge, FetchFailed."""
        if source.s3 is not None:
            if self._s3_fetcher is None:
                raise InvalidRequest("s3 sources are not available here", field="s3_uri")
            return self._s3_fetcher.fetch(source, workdir)
        url = source.url
        if not url:
            raise InvalidRequest(f"{FIELD}: a source is required", field=FIELD)
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme in ("http", "https"):
            return self._fetch_http(url, workdir)
        if scheme in ("", "file"):
            if not self._allow_local_files:
                raise InvalidRequest(f"{FIELD}: local files are not accepted, use an http(s) URL", field=FIELD)
            return self._fetch_local(_local_path(url))
        raise InvalidRequest(f"{FIELD}: only http(s) URLs are accepted", field=FIELD)

    def _check(self, url: str) -> CheckedTarget:
        return check_url(
            url, self._network, self._limits, field=FIELD, resolver=self._resolver, exempt_endpoints=self._exempt
        )

    def _fetch_local(self, path: Path) -> FetchedVideo:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise VideoNotFound(f"{FIELD}: {path} does not exist", field=FIELD) from None
        if not path.is_file():
            raise InvalidRequest(f"{FIELD}: {path} is not a regular file", field=FIELD)
        if size > self._limits.max_source_bytes:
            raise SourceTooLarge(f"{FIELD}: {size} bytes, the limit is {self._limits.max_source_bytes}", field=FIELD)
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return FetchedVideo(path=path, sha256=digest, size_bytes=size)

    def _fetch_http(self, url: str, workdir: Path) -> FetchedVideo:
        import httpx

        target = self._check(url)
        headers = {"Accept-Encoding": "identity", "User-Agent": "video-ai"}
        try:
            with PinnedClient(
                connect_timeout_s=self._limits.connect_timeout_s,
                read_timeout_s=self._limits.read_timeout_s,
                ssl_context=self._ssl_context,
            ) as client:
                for hop in range(self._limits.max_redirects + 1):
                    with client.stream("GET", target, headers=headers) as response:
                        if response.status_code in REDIRECT_STATUSES:
                            target = self._redirect(target, response, hop)
                            continue
                        _raise_for_status(response, target)
                        return self._save(response, workdir, target)
        except httpx.TimeoutException as err:
            raise FetchFailed(f"{FIELD}: timed out fetching {target.url}: {type(err).__name__}", field=FIELD) from None
        except httpx.TransportError as err:
            raise FetchFailed(f"{FIELD}: cannot fetch {target.url}: {err}", field=FIELD) from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _redirect(self, target: CheckedTarget, response: httpx.Response, hop: int) -> CheckedTarget:
        location = response.headers.get("location")
        if not location:
            raise FetchFailed(f"{FIELD}: {target.url} answered {response.status_code} without a Location", field=FIELD)
        if hop >= self._limits.max_redirects:
            # A redirect loop does not heal by itself: permanent.
            raise InvalidRequest(f"{FIELD}: more than {self._limits.max_redirects} redirects", field=FIELD)
        next_url = urljoin(target.url, location)
        logger.debug("redirect %s -> %s", target.url, next_url)
        return self._check(next_url)

    def _save(self, response: httpx.Response, workdir: Path, target: CheckedTarget) -> FetchedVideo:
        cap = self._limits.max_source_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise SourceTooLarge(f"{FIELD}: Content-Length {declared} exceeds the limit of {cap} bytes", field=FIELD)
        workdir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=workdir, prefix="source-", suffix=_suffix(target.path))
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                # iter_raw: count the bytes on the wire, never a decompressed expansion of them.
                for chunk in response.iter_raw(self._chunk_size):
                    size += len(chunk)
                    if size > cap:
                        raise SourceTooLarge(f"{FIELD}: the source is larger than {cap} bytes", field=FIELD)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FetchedVideo(path=path, sha256=digest.hexdigest(), size_bytes=size)


def _raise_for_status(response: httpx.Response, target: CheckedTarget) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{FIELD}: {target.url} answered {status}"
    if status in NOT_FOUND_STATUSES:
        raise VideoNotFound(where, field=FIELD)
    if status >= 500 or status in TRANSIENT_4XX:
        raise FetchFailed(where, field=FIELD)
    if 400 <= status < 500:
        raise InvalidRequest(where, field=FIELD)
    raise FetchFailed(where, field=FIELD)  # 1xx/3xx leftovers: unexpected, maybe a flaky proxy


def _suffix(path: str) -> str:
    suffix = PurePosixPath(unquote(path.split("?", 1)[0])).suffix.lower()
    return suffix if _SAFE_SUFFIX.match(suffix) else ""


def _local_path(url: str) -> Path:
    if not url.lower().startswith("file:"):
        return Path(url).expanduser()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidRequest(f"{FIELD}: not a valid file URL", field=FIELD) from None
    if parts.netloc not in ("", "localhost"):
        raise InvalidRequest(f"{FIELD}: file URLs must name a local path", field=FIELD)
    return Path(url2pathname(unquote(parts.path)))
