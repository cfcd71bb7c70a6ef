"""The SSRF policy at check time: every hostile URL refused, public ones pinned to what was checked. No sockets."""

from __future__ import annotations

import ipaddress

import pytest

from tests.fixtures.hostile_urls import ALWAYS_REFUSED, HOSTILE_URLS, FakeResolver
from video_ai.adapters.net_guard import NetGuard, check_url, classify_address
from video_ai.domain.errors import FetchFailed, ForbiddenAddress, InvalidRequest
from video_ai.settings import LimitsSettings, NetworkSettings

DEPLOYED = NetworkSettings()
DEPLOYED_HTTP = NetworkSettings(allow_http=True)  # so the address check, not the scheme, is what refuses
DEVELOPMENT = NetworkSettings(allow_http=True, allow_private_addresses=True)
LIMITS = LimitsSettings()


def test_the_table_is_big_enough_and_unique() -> None:
    urls = [u for u, _ in HOSTILE_URLS]
    assert len(urls) >= 25
    assert len(set(urls)) == len(urls)


@pytest.mark.parametrize(("url", "why"), HOSTILE_URLS, ids=[w for _, w in HOSTILE_URLS])
def test_hostile_urls_are_refused_with_forbidden_address(url: str, why: str) -> None:
    with pytest.raises(ForbiddenAddress) as caught:
        check_url(url, DEPLOYED_HTTP, LIMITS, field="video_url", resolver=FakeResolver())
    assert caught.value.to_dict()["code"] == "forbidden_address"
    assert caught.value.field == "video_url"


@pytest.mark.parametrize(("url", "why"), HOSTILE_URLS, ids=[w for _, w in HOSTILE_URLS])
def test_hostile_urls_are_refused_by_the_submit_guard_too(url: str, why: str) -> None:
    guard = NetGuard(DEPLOYED, LIMITS, FakeResolver())
    with pytest.raises(ForbiddenAddress) as caught:
        guard.check(url.replace("http://", "https://", 1), "callback_url")
    assert caught.value.field == "callback_url"


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_development_profile_still_refuses_metadata_link_local_and_unroutable(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(url, DEVELOPMENT, LIMITS, field="video_url", resolver=FakeResolver())


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v.mp4", "http://localhost:9999/", "http://10.1.2.3/", "http://[::1]:8080/",
     "http://[fd12::1]/", "http://loop.attacker.test:5000/", "http://[::ffff:192.168.0.7]/", "http://100.64.1.1/"],
)
def test_development_profile_allows_loopback_and_private_on_any_port(url: str) -> None:
    target = check_url(url, DEVELOPMENT, LIMITS, field="video_url", resolver=FakeResolver())
    assert target.addresses


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://public.test/v.mp4", ("93.184.216.34",)),
        ("https://public6.test:8443/v.mp4", ("2606:4700:4700::1111",)),
        ("https://93.184.216.34/v.mp4", ("93.184.216.34",)),
        ("https://[::ffff:8.8.8.8]/", ("::ffff:808:808",)),
        ("https://[64:ff9b::8.8.8.8]/", ("64:ff9b::808:808",)),
        ("https://[2002:808:808::1]/", ("2002:808:808::1",)),
    ],
)
def test_public_targets_pass_and_carry_the_checked_addresses(url: str, addresses: tuple[str, ...]) -> None:
    target = check_url(url, DEPLOYED, LIMITS, field="video_url", resolver=FakeResolver())
    assert target.addresses == addresses


def test_every_address_of_a_name_is_checked_not_only_the_first() -> None:
    resolver = FakeResolver({"multi.test": ["93.184.216.34", "8.8.8.8", "169.254.169.254"]})
    with pytest.raises(ForbiddenAddress, match=r"169\.254\.169\.254"):
        check_url("https://multi.test/", DEPLOYED, LIMITS, field="video_url", resolver=resolver)


def test_trailing_dot_and_case_are_resolved_as_the_bare_name() -> None:
    resolver = FakeResolver()
    target = check_url("https://PUBLIC.test./x", DEPLOYED, LIMITS, field="video_url", resolver=resolver)
    assert resolver.lookups == [("public.test", 443)]
    assert target.host == "public.test"


def test_ip_literals_and_localhost_never_reach_the_resolver() -> None:
    resolver = FakeResolver({"localhost": ["93.184.216.34"]})  # a lying /etc/hosts must not matter
    for url in ("http://2130706433/", "http://[::1]/", "http://localhost/"):
        with pytest.raises(ForbiddenAddress):
            check_url(url, DEPLOYED_HTTP, LIMITS, field="video_url", resolver=resolver)
    assert resolver.lookups == []


def test_plain_http_needs_allow_http() -> None:
    with pytest.raises(ForbiddenAddress, match="plain http"):
        check_url("http://public.test/", DEPLOYED, LIMITS, field="video_url", resolver=FakeResolver())
    assert check_url("http://public.test/", DEPLOYED_HTTP, LIMITS, field="video_url", resolver=FakeResolver())


def test_ports_outside_the_allowed_list_are_refused() -> None:
    network = NetworkSettings(allowed_ports=[8443])
    ok = check_url("https://public.test:8443/", network, LIMITS, field="video_url", resolver=FakeResolver())
    assert ok.port == 8443
    assert check_url("https://public.test/", network, LIMITS, field="video_url", resolver=FakeResolver()).port == 443
    for url in ("https://public.test:22/", "https://public.test:6379/", "https://public.test:80/"):
        with pytest.raises(ForbiddenAddress, match="port"):
            check_url(url, network, LIMITS, field="callback_url", resolver=FakeResolver())


def test_exempt_endpoint_allows_exactly_that_address_and_port() -> None:
    exempt = {("127.0.0.1", 8123)}
    target = check_url("http://loop.attacker.test:8123/v", DEPLOYED_HTTP, LIMITS, field="video_url",
                       resolver=FakeResolver(), exempt_endpoints=exempt)
    assert target.addresses == ("127.0.0.1",)
    for url in ("http://127.0.0.1:8124/", "http://127.0.0.1/", "http://[::1]:8123/", "http://169.254.169.254:8123/"):
        with pytest.raises(ForbiddenAddress):
            check_url(url, DEPLOYED_HTTP, LIMITS, field="video_url", resolver=FakeResolver(), exempt_endpoints=exempt)


def test_unresolvable_names_are_transient_at_fetch_and_invalid_at_submit() -> None:
    with pytest.raises(FetchFailed) as caught:
        check_url("https://nxdomain.test/", DEPLOYED, LIMITS, field="video_url", resolver=FakeResolver())
    assert caught.value.permanent is False
    with pytest.raises(InvalidRequest):
        NetGuard(DEPLOYED, LIMITS, FakeResolver()).check("https://nxdomain.test/", "video_url")
    with pytest.raises(FetchFailed):
        check_url("https://empty.test/", DEPLOYED, LIMITS, field="video_url", resolver=FakeResolver({"empty.test": []}))


def test_syntax_errors_surface_as_invalid_request_with_the_field() -> None:
    for url in ("https://user:pw@public.test/", "ftp://public.test/", "https://public.test/" + "a" * 3000):
        with pytest.raises(InvalidRequest) as caught:
            check_url(url, DEPLOYED, LIMITS, field="callback_url", resolver=FakeResolver())
        assert caught.value.field == "callback_url"


def test_pinned_url_targets_the_checked_address_and_keeps_the_host_header() -> None:
    target = check_url("https://public6.test:8443/a?b=1", DEPLOYED, LIMITS, field="video_url", resolver=FakeResolver())
    assert target.pinned_url(target.addresses[0]) == "https://[2606:4700:4700::1111]:8443/a?b=1"
    assert target.host_header == "public6.test:8443"
    assert target.url == "https://public6.test:8443/a?b=1"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"), ("10.9.8.7", "private"), ("172.31.255.255", "private"), ("172.32.0.1", None),
        ("192.168.0.1", "private"), ("169.254.169.254", "metadata"), ("169.254.0.1", "link_local"),
        ("100.64.0.1", "cgnat"), ("100.128.0.1", None), ("100.100.100.200", "metadata"), ("224.0.0.251", "multicast"),
        ("0.1.2.3", "unspecified"), ("255.255.255.255", "reserved"), ("203.0.113.9", "reserved"),
        ("8.8.8.8", None), ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link_local"),
        ("fc00::1", "private"), ("ff05::2", "multicast"), ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::a00:1", "private"), ("64:ff9b:1::1", "reserved"),
        ("2002:a9fe:a9fe::", "metadata"), ("::8.8.8.8", "reserved"), ("2001::1", "reserved"),
        ("2606:4700:4700::1111", None),
    ],
)
def test_classify_address(address: str, kind: str | None) -> None:
    assert classify_address(ipaddress.ip_address(address)) == kind
