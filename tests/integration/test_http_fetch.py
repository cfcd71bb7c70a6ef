"""HttpVideoFetcher against a loopback HTTP(S) server: pinning, redirects re-checked, caps, statuses, cleanup."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import trustme

from tests.fixtures.hostile_urls import HOSTILE_URLS, FakeResolver
from tests.loopback import running
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.domain.errors import FetchFailed, ForbiddenAddress, InvalidRequest, SourceTooLarge, VideoNotFound
from video_ai.domain.models import S3Location, Source
from video_ai.domain.ports import FetchedVideo
from video_ai.settings import LimitsSettings, NetworkSettings

PAYLOAD = os.urandom(300_000)
DEPLOYED_HTTP = NetworkSettings(allow_http=True)  # deployed address policy; http so the server needs no TLS
RELEASE_WAIT_S = 5.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _raw(self, head: bytes, body: bytes = b"") -> None:
        # Written by hand so a Location may carry raw UTF-8 and a Content-Length may lie.
        self.wfile.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        self.close_connection = True

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route.startswith("/video"):
            self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d" % len(PAYLOAD), PAYLOAD)
        elif route == "/redirect":
            self._raw(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: " + query["to"].encode("utf-8"))
        elif route.startswith("/chain/"):
            left = int(route.rsplit("/", 1)[1])
            location = "/video.mp4" if left == 0 else f"/chain/{left - 1}"
            self._raw(b"HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\nLocation: " + location.encode())
        elif route == "/status":
            code = int(query["code"])
            self._raw(b"HTTP/1.1 %d X\r\nContent-Length: 2" % code, b"no")
        elif route == "/declared-huge":
            self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000", b"x" * 100)
        elif route == "/streamed-huge":
            self._raw(b"HTTP/1.1 200 OK", b"x" * 50_000)  # no length: read until close
        elif route == "/truncated":
            self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000", b"x" * 10)
        elif route == "/slow":
            self.server.release.wait(RELEASE_WAIT_S)  # bounded: the test sets it on teardown
            self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2", b"ok")
        else:
            self._raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.sni: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment,misc]
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def server() -> Iterator[Server]:
    yield from running(Server())


def _fetcher(server: Server, **kw: Any) -> HttpVideoFetcher:
    kw.setdefault("network", DEPLOYED_HTTP)
    kw.setdefault("limits", LimitsSettings(connect_timeout_s=2, read_timeout_s=2))
    kw.setdefault("resolver", FakeResolver({"safe.test": ["127.0.0.1"], "cdn.test": ["127.0.0.1"]}))
    kw.setdefault("exempt_endpoints", {("127.0.0.1", server.port)})
    return HttpVideoFetcher(**kw)


def _url(server: Server, path: str, host: str = "safe.test") -> str:
    return f"http://{host}:{server.port}{path}"


def test_fetch_streams_to_workdir_with_sha256_through_the_pinned_address(server: Server, tmp_path: Path) -> None:
    fetched = _fetcher(server).fetch(Source(url=_url(server, "/video.mp4?sig=abc")), tmp_path)
    assert fetched.size_bytes == len(PAYLOAD)
    assert fetched.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert fetched.path.parent == tmp_path and fetched.path.read_bytes() == PAYLOAD
    assert fetched.path.suffix == ".mp4"
    # "safe.test" exists only in the fake resolver: reaching the server proves we connected to the checked IP,
    # and the server still saw the original name.
    assert server.seen == [{"path": "/video.mp4?sig=abc", "host": f"safe.test:{server.port}"}]


def test_the_deployed_policy_refuses_the_loopback_server_without_the_exemption(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ForbiddenAddress):
        _fetcher(server, exempt_endpoints=()).fetch(Source(url=_url(server, "/video.mp4")), tmp_path)
    assert server.seen == []


def test_the_development_profile_reaches_loopback(server: Server, tmp_path: Path) -> None:
    dev = NetworkSettings(allow_http=True, allow_private_addresses=True)
    fetched = _fetcher(server, network=dev, exempt_endpoints=()).fetch(
        Source(url=f"http://127.0.0.1:{server.port}/video.mp4"), tmp_path)
    assert fetched.size_bytes == len(PAYLOAD)


def test_dns_is_resolved_once_per_hop_and_never_again_at_connect(server: Server, tmp_path: Path) -> None:
    class Rebinding(FakeResolver):
        def resolve(self, host: str, port: int) -> list[str]:
            answer = super().resolve(host, port)
            self.table[host] = ["169.254.169.254"]  # every later answer points at the metadata service
            return answer

    resolver = Rebinding({"safe.test": ["127.0.0.1"]})
    fetched = _fetcher(server, resolver=resolver).fetch(Source(url=_url(server, "/video.mp4")), tmp_path)
    assert fetched.size_bytes == len(PAYLOAD)
    assert resolver.lookups == [("safe.test", server.port)]


@pytest.mark.parametrize(("url", "why"), HOSTILE_URLS, ids=[w for _, w in HOSTILE_URLS])
def test_hostile_urls_are_refused_at_fetch_time(server: Server, tmp_path: Path, url: str, why: str) -> None:
    resolver = FakeResolver()
    resolver.table["safe.test"] = ["127.0.0.1"]
    fetcher = _fetcher(server, resolver=resolver)
    with pytest.raises(ForbiddenAddress) as direct:
        fetcher.fetch(Source(url=url), tmp_path)
    assert direct.value.field == "video_url"
    with pytest.raises(ForbiddenAddress):
        fetcher.fetch(Source(url=_url(server, "/redirect?to=" + quote(url, safe=""))), tmp_path)
    assert [s["path"].split("?")[0] for s in server.seen] == ["/redirect"]  # only the first, allowed hop connected
    assert list(tmp_path.iterdir()) == []


def test_redirect_to_the_same_ip_on_another_port_is_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ForbiddenAddress):
        _fetcher(server).fetch(Source(url=_url(server, "/redirect?to=http://127.0.0.1:1/")), tmp_path)


def test_redirects_are_followed_up_to_the_limit_and_rechecked(server: Server, tmp_path: Path) -> None:
    fetched = _fetcher(server).fetch(Source(url=_url(server, "/chain/2")), tmp_path)  # 3 redirects
    assert fetched.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert [s["path"] for s in server.seen] == ["/chain/2", "/chain/1", "/chain/0", "/video.mp4"]
    with pytest.raises(InvalidRequest, match="redirects"):
        _fetcher(server).fetch(Source(url=_url(server, "/chain/3")), tmp_path)  # 4 redirects


def test_a_redirect_to_another_name_is_resolved_and_sends_that_host(server: Server, tmp_path: Path) -> None:
    target = _url(server, "/video.mp4", host="cdn.test")
    _fetcher(server).fetch(Source(url=_url(server, "/redirect?to=" + quote(target, safe=""))), tmp_path)
    assert server.seen[-1] == {"path": "/video.mp4", "host": f"cdn.test:{server.port}"}


def test_redirect_downgrade_to_plain_http_is_refused_when_http_is_not_allowed(tmp_path: Path) -> None:
    # Only the refusal matters here, so no server is needed: the first URL itself is https.
    fetcher = HttpVideoFetcher(NetworkSettings(), LimitsSettings(), FakeResolver())
    with pytest.raises(ForbiddenAddress, match="plain http"):
        fetcher.fetch(Source(url="http://public.test/v.mp4"), tmp_path)


@pytest.mark.parametrize(
    ("code", "error"),
    [(404, VideoNotFound), (410, VideoNotFound), (403, VideoNotFound), (400, InvalidRequest),
     (405, InvalidRequest), (429, FetchFailed), (500, FetchFailed), (503, FetchFailed)],
)
def test_http_statuses_map_to_domain_errors(server: Server, tmp_path: Path, code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        _fetcher(server).fetch(Source(url=_url(server, f"/status?code={code}")), tmp_path)
    assert caught.type is error
    assert list(tmp_path.iterdir()) == []


def test_content_length_over_the_cap_is_refused_before_reading(server: Server, tmp_path: Path) -> None:
    with pytest.raises(SourceTooLarge, match="Content-Length"):
        _fetcher(server).fetch(Source(url=_url(server, "/declared-huge")), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_streamed_bytes_over_the_cap_are_refused_and_the_temp_file_removed(server: Server, tmp_path: Path) -> None:
    limits = LimitsSettings(max_source_bytes=20_000, connect_timeout_s=2, read_timeout_s=2)
    with pytest.raises(SourceTooLarge):
        _fetcher(server, limits=limits, chunk_size=4096).fetch(Source(url=_url(server, "/streamed-huge")), tmp_path)
    assert list(tmp_path.iterdir()) == []
    ok = _fetcher(server, limits=LimitsSettings(max_source_bytes=len(PAYLOAD))).fetch(
        Source(url=_url(server, "/video.mp4")), tmp_path)
    assert ok.size_bytes == len(PAYLOAD)  # exactly at the cap is allowed


def test_a_truncated_body_is_a_transient_failure_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchFailed):
        _fetcher(server).fetch(Source(url=_url(server, "/truncated")), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(20)
def test_read_timeout_is_bounded(server: Server, tmp_path: Path) -> None:
    limits = LimitsSettings(connect_timeout_s=1, read_timeout_s=0.3)
    with pytest.raises(FetchFailed, match="timed out"):
        _fetcher(server, limits=limits).fetch(Source(url=_url(server, "/slow")), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetcher = HttpVideoFetcher(DEPLOYED_HTTP, LimitsSettings(connect_timeout_s=1), FakeResolver(
        {"safe.test": ["127.0.0.1"]}), exempt_endpoints={("127.0.0.1", port)})
    with pytest.raises(FetchFailed):
        fetcher.fetch(Source(url=f"http://safe.test:{port}/v.mp4"), tmp_path)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize(("cert_name", "ok"), [("safe.test", True), ("other.test", False)])
def test_https_is_pinned_with_sni_and_verified_for_the_original_name(
    ca: trustme.CA, tmp_path: Path, cert_name: str, ok: bool
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_name).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    for srv in running(Server(tls=server_ctx)):
        fetcher = _fetcher(srv, network=NetworkSettings(), ssl_context=client_ctx)
        url = f"https://safe.test:{srv.port}/video.mp4"
        if ok:
            assert fetcher.fetch(Source(url=url), tmp_path).sha256 == hashlib.sha256(PAYLOAD).hexdigest()
            assert srv.seen[0]["host"] == f"safe.test:{srv.port}"
        else:
            with pytest.raises(FetchFailed):
                fetcher.fetch(Source(url=url), tmp_path)
            assert srv.seen == []
        assert srv.sni == ["safe.test"]


def test_local_files_only_when_allowed(tmp_path: Path) -> None:
    video = tmp_path / "in dir" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"local bytes")
    work = tmp_path / "work"
    with pytest.raises(InvalidRequest):
        HttpVideoFetcher(NetworkSettings(), LimitsSettings()).fetch(Source(url=str(video)), work)
    fetcher = HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True)
    for url in (str(video), video.as_uri()):
        fetched = fetcher.fetch(Source(url=url), work)
        assert fetched.path == video and fetched.size_bytes == 11
        assert fetched.sha256 == hashlib.sha256(b"local bytes").hexdigest()
    with pytest.raises(VideoNotFound):
        fetcher.fetch(Source(url=str(tmp_path / "missing.mp4")), work)
    with pytest.raises(SourceTooLarge):
        HttpVideoFetcher(NetworkSettings(), LimitsSettings(max_source_bytes=5), allow_local_files=True).fetch(
            Source(url=str(video)), work)
    with pytest.raises(InvalidRequest):
        fetcher.fetch(Source(url="ftp://example.com/v.mp4"), work)


def test_s3_sources_are_delegated(tmp_path: Path) -> None:
    class RecordingS3:
        def __init__(self) -> None:
            self.sources: list[Source] = []

        def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
            self.sources.append(source)
            return FetchedVideo(path=workdir / "x", sha256="0" * 64, size_bytes=0)

    s3 = RecordingS3()
    source = Source(s3=S3Location(bucket="b", key="k.mp4"))
    assert HttpVideoFetcher(NetworkSettings(), LimitsSettings(), s3_fetcher=s3).fetch(source, tmp_path).size_bytes == 0
    assert s3.sources == [source]
    with pytest.raises(InvalidRequest):
        HttpVideoFetcher(NetworkSettings(), LimitsSettings()).fetch(source, tmp_path)
