"""SSRF guard for `video_url` and `callback_url`: URL policy, address classification, resolver port, pinned requests.

Policy (`check_url`): http(s) only, plain http only when `network.allow_http`; no credentials; length and port
limits; the host is resolved and EVERY address must be allowed. The deployed profile refuses every non-global
address. `network.allow_private_addresses` (development profile) additionally allows loopback, RFC 1918, CGNAT and
IPv6 ULA targets, so a local file server and receiver work, but never link-local (169.254.0.0/16 holds the cloud
metadata service), cloud metadata addresses, unspecified, multicast, broadcast or other reserved ranges.
Tests that need one loopback server under the deployed policy pass `exempt_endpoints={("127.0.0.1", port)}`:
exactly that address *and* port is let through, so 127.0.0.1 on any other port is still refused. It is a
constructor argument, never a config key.

Pinning (no DNS-rebinding window): the request goes to `scheme://<checked IP>:<port>/path` with the original
`Host` header and, for https, httpcore's documented `sni_hostname` request extension, which sets the TLS
`server_hostname`: SNI and certificate verification use the original host name while the TCP connection goes to
the address we checked. Keep-alive is off so a TLS connection verified for one name is never reused for another
name that happens to share the IP. `trust_env=False` keeps HTTP(S)_PROXY from routing around the check.
httpx is imported lazily: the API's submit path only needs `check_url`.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from video_ai.domain.errors import FetchFailed, ForbiddenAddress, InvalidRequest
from video_ai.domain.urls import DEFAULT_PORTS, ParsedUrl, parse_http_url
from video_ai.settings import LimitsSettings, NetworkSettings

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata / credential endpoints of AWS (IPv4, IPv6, ECS task role), GCP/Azure (same IPv4),
# Alibaba (inside CGNAT space) and Oracle: refused under every profile.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.123", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_ULA = ipaddress.IPv6Network("fc00::/7")

# Address classes `allow_private_addresses` lets through; everything else non-global stays refused.
DEVELOPMENT_CLASSES = frozenset({"loopback", "private", "cgnat"})


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (textual IPv4/IPv6); raise OSError when it does not resolve."""
        ...


class SystemResolver:
    """getaddrinfo, i.e. what a socket connect would have used."""

    def resolve(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        seen: dict[str, None] = {}
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 scope id
            seen.setdefault(address, None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL that passed the policy, with the addresses it may be connected to (in resolver order)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def parsed(self) -> ParsedUrl:
        return ParsedUrl(scheme=self.scheme, host=self.host, port=self.port, path=self.path)

    @property
    def host_header(self) -> str:
        return self.parsed.host_header

    @property
    def url(self) -> str:
        """The logical URL (original host): the base for relative redirects, and what logs show."""
        return self.parsed.url

    def pinned_url(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, compatible), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64 or addr in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    return None


def classify_address(addr: IPAddress) -> str | None:
    """Name the forbidden class of `addr` ("loopback", "link_local", ...), or None for a public address."""
    if addr in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.is_unspecified:
            return "unspecified"
        if addr.is_loopback:
            return "loopback"
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            inner = classify_address(embedded)
            if inner is not None:
                return inner
            # A public IPv4 in the deprecated compatible form does not route anywhere sensible.
            return "reserved" if addr in _IPV4_COMPATIBLE else None
        if addr in _NAT64_LOCAL:
            return "reserved"
        if addr.is_link_local:
            return "link_local"
        if addr.is_multicast:
            return "multicast"
        if addr in _ULA or addr.is_site_local:
            return "private"
        return None if addr.is_global else "reserved"
    if addr in _THIS_NETWORK:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_multicast:
        return "multicast"
    if addr in _CGNAT:
        return "cgnat"
    if any(addr in net for net in _RFC1918):
        return "private"
    return None if addr.is_global else "reserved"


def refusal_reason(addr: IPAddress, network: NetworkSettings) -> str | None:
    """Why `addr` may not be connected to under `network`, or None when it may."""
    kind = classify_address(addr)
    if kind is None or (network.allow_private_addresses and kind in DEVELOPMENT_CLASSES):
        return None
    return kind


def check_url(
    url: str,
    network: NetworkSettings,
    limits: LimitsSettings,
    *,
    field: str,
    resolver: Resolver | None = None,
    exempt_endpoints: Collection[tuple[str, int]] = (),
) -> CheckedTarget:
    """Apply the whole policy to `url`; return where it may be connected to.

    Raises InvalidRequest (malformed, credentials, too long), ForbiddenAddress (plain http not allowed, port not
    allowed, any resolved address forbidden) and FetchFailed (the name does not resolve: may be temporary).
    """
    parsed = parse_http_url(url, field=field, max_length=limits.max_url_length)
    if parsed.scheme == "http" and not network.allow_http:
        raise ForbiddenAddress(f"{field}: plain http is not allowed, use https", field=field)
    addresses = _resolve(parsed, field=field, resolver=resolver or SystemResolver())
    port_allowed = (
        network.allow_private_addresses
        or parsed.port == DEFAULT_PORTS[parsed.scheme]
        or parsed.port in network.allowed_ports
    )
    exempt = {(str(ipaddress.ip_address(a)), p) for a, p in exempt_endpoints}
    for address in addresses:
        if (str(address), parsed.port) in exempt:
            continue
        if not port_allowed:
            raise ForbiddenAddress(f"{field}: port {parsed.port} is not allowed", field=field)
        reason = refusal_reason(address, network)
        if reason is not None:
            shown = "" if parsed.is_ip_literal else f" ({parsed.host} resolves to {address})"
            raise ForbiddenAddress(f"{field}: {reason.replace('_', '-')} address refused{shown}", field=field)
    return CheckedTarget(
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        path=parsed.path,
        addresses=tuple(str(a) for a in addresses),
    )


class NetGuard:
    """`check_url` bound to settings: the `UrlGuard` the submit service calls for video_url and callback_url."""

    def __init__(
        self,
        network: NetworkSettings,
        limits: LimitsSettings,
        resolver: Resolver | None = None,
        *,
        exempt_endpoints: Collection[tuple[str, int]] = (),
    ) -> None:
        self._network = network
        self._limits = limits
        self._resolver = resolver
        self._exempt = tuple(exempt_endpoints)

    def check(self, url: str, field: str) -> None:
        """Raise ForbiddenAddress / InvalidRequest; at submit an unresolvable host is the caller's error (422)."""
        try:
            check_url(url, self._network, self._limits, field=field, resolver=self._resolver,
                      exempt_endpoints=self._exempt)
        except FetchFailed as err:
            raise InvalidRequest(err.message, field=field) from None


def _resolve(parsed: ParsedUrl, *, field: str, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(parsed.host)]
    except ValueError:
        pass
    if parsed.host == "localhost" or parsed.host.endswith(".localhost"):
        # RFC 6761: always loopback, whatever a resolver (or /etc/hosts) says.
        return [ipaddress.IPv4Address("127.0.0.1")]
    try:
        raw = resolver.resolve(parsed.host, parsed.port)
    except (OSError, UnicodeError) as err:
        raise FetchFailed(f"{field}: cannot resolve {parsed.host}: {err}", field=field) from None
    if not raw:
        raise FetchFailed(f"{field}: {parsed.host} has no addresses", field=field)
    try:
        return [ipaddress.ip_address(a.split("%", 1)[0]) for a in raw]
    except ValueError:
        raise FetchFailed(f"{field}: the resolver returned an invalid address for {parsed.host}", field=field) from None


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """certifi's CA bundle, loaded once per process: loading it costs ~50-300 ms, a warm Lambda reuses it."""
    import httpx

    return httpx.create_ssl_context(trust_env=False)


class PinnedClient:
    """Sends requests to checked addresses over an httpx transport; no redirects, proxies or keep-alive.

    The transport is used directly (not `httpx.Client`) because the client parses every `Location` header itself
    and rejects the odd spellings (`0251.0376.0251.0376`) we need to see in order to refuse them properly.
    """

    def __init__(
        self, *, connect_timeout_s: float, read_timeout_s: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        import httpx

        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s).as_dict()
        self._transport = httpx.HTTPTransport(
            verify=ssl_context if ssl_context is not None else _default_ssl_context(),
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def __enter__(self) -> PinnedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @contextmanager
    def stream(
        self,
        method: str,
        target: CheckedTarget,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Iterator[httpx.Response]:
        """Send one request to the checked addresses (the next only if connecting fails); yield the open response."""
        import httpx

        extensions: dict[str, object] = {"timeout": self._timeout}
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
        last_error: httpx.TransportError | None = None
        for address in target.addresses:
            request = httpx.Request(
                method,
                target.pinned_url(address),
                headers={**(headers or {}), "Host": target.host_header},
                content=content,
                extensions=extensions,
            )
            try:
                response = self._transport.handle_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                # Nothing was sent yet, so trying the next checked address is safe even for a POST.
                last_error = err
                continue
            response.request = request
            try:
                yield response
            finally:
                response.close()
            return
        assert last_error is not None  # addresses is never empty: check_url refuses names without addresses
        raise last_error
