"""URL syntax checks: normalisation the way a resolver sees the host, and refusals that name the field."""

from __future__ import annotations

import pytest

from video_ai.domain.errors import InvalidRequest
from video_ai.domain.urls import parse_http_url


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://Example.COM/a/b?x=1#frag", "example.com", 443, "/a/b?x=1"),
        ("http://example.com.:8080", "example.com", 8080, "/"),
        ("http://example.com:/", "example.com", 80, "/"),
        ("http://2130706433/", "127.0.0.1", 80, "/"),
        ("http://0x7f.1/", "127.0.0.1", 80, "/"),
        ("http://017700000001/", "127.0.0.1", 80, "/"),
        ("http://127.1/", "127.0.0.1", 80, "/"),
        ("http://0/", "0.0.0.0", 80, "/"),
        ("http://0251.0376.0251.0376/", "169.254.169.254", 80, "/"),
        ("http://[::ffff:127.0.0.1]:8443/", "::ffff:7f00:1", 8443, "/"),
        ("http://[0:0:0:0:0:0:0:1]/", "::1", 80, "/"),
        ("https://bücher.example/", "xn--bcher-kva.example", 443, "/"),
        ("http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11/", "127.0.0.1", 80, "/"),
        ("http://localhost./", "localhost", 80, "/"),
    ],
)
def test_hosts_are_normalised_like_a_resolver_would(url: str, host: str, port: int, path: str) -> None:
    parsed = parse_http_url(url, field="video_url")
    assert (parsed.host, parsed.port, parsed.path) == (host, port, path)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/v.mp4",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "example.com/v.mp4",
        "http:example.com",
        "http:///v.mp4",
        "http://user:pass@example.com/",
        "http://user@example.com/",
        "http://example.com@127.0.0.1/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:8o/",
        "http://example.com:+80/",
        "http://exa mple.com/",
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com\\@127.0.0.1/",
        "http://127.0.0.%31/",
        "http://[fe80::1%25eth0]/",
        "http://[::1/",
        "http://[not-v6]/",
        "http://::1/",
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://example.123/",
        "http://-bad-.example/",
        "http://a..b/",
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_malformed_or_unsafe_urls_are_invalid_requests(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_http_url(url, field="callback_url")
    assert caught.value.field == "callback_url"
    assert caught.value.to_dict()["code"] == "invalid_request"


def test_length_limit_counts_the_whole_url() -> None:
    base = "https://example.com/"
    assert parse_http_url(base + "a" * (100 - len(base)), field="video_url", max_length=100).path.startswith("/a")
    with pytest.raises(InvalidRequest, match="longer than 100"):
        parse_http_url(base + "a" * (101 - len(base)), field="video_url", max_length=100)


def test_host_header_and_url_keep_non_default_ports_and_bracket_ipv6() -> None:
    assert parse_http_url("https://example.com:443/x", field="f").host_header == "example.com"
    assert parse_http_url("https://example.com:8443/x", field="f").host_header == "example.com:8443"
    v6 = parse_http_url("http://[2606:4700::1111]:8080/p?q", field="f")
    assert v6.host_header == "[2606:4700::1111]:8080"
    assert v6.url == "http://[2606:4700::1111]:8080/p?q"
    assert v6.is_ip_literal
