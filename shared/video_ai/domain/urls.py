"""URL syntax checks for `video_url` / `callback_url`: pure, no I/O, cheap to import (the API runs them at submit).

The address policy (what the host resolves to) lives in `video_ai.adapters.net_guard`; this module only decides
whether a string is an http(s) URL we are willing to interpret, and normalises its host the way a resolver would,
so that the host we check is the host we connect to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from video_ai.domain.errors import InvalidRequest

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
DEFAULT_MAX_URL_LENGTH = 2048

# Whitespace, control characters and backslashes are where URL parsers disagree (browsers turn "\" into "/"),
# and a parser differential is how SSRF filters get bypassed: refuse them outright.
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# WHATWG "ends in a number": such a host is an IPv4 address (in any spelling), never a DNS name.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """An http(s) URL split into the parts we connect with; `host` is normalised (see `normalise_host`)."""

    scheme: str
    host: str
    port: int
    path: str  # path + "?query", always starting with "/"; the fragment is dropped (never sent)

    @property
    def is_ip_literal(self) -> bool:
        return _ip_or_none(self.host) is not None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", field=field)


def normalise_host(raw: str, *, field: str) -> str:
    """Lower-case, IDNA-encode, strip the trailing dot, and turn any IPv4 spelling into dotted-quad form.

    IPv6 literals come without brackets, compressed. `0x7f.1`, `2130706433`, `017700000001` and `127.1` all become
    `127.0.0.1` (inet_aton semantics, which is what getaddrinfo applies to numeric hosts).
    """
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _invalid(field, "unbalanced brackets in host")
        inner = raw[1:-1]
        if "%" in inner:
            raise _invalid(field, "IPv6 zone identifiers are not allowed")
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise _invalid(field, "not a valid IPv6 address") from None
    if "%" in raw:
        # Percent-encoded hosts are decoded by some parsers and not others: refuse rather than guess.
        raise _invalid(field, "percent-encoding is not allowed in the host")
    host = raw
    if not host.isascii():
        host = _idna_encode(host, field=field)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _invalid(field, "the URL has no host")
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            raise _invalid(field, "not a valid IPv4 address") from None
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _invalid(field, "not a valid host name")
    return host


def _idna_encode(host: str, *, field: str) -> str:
    """UTS #46 mapping (fullwidth digits and ideographic dots become ASCII) then IDNA 2008, as browsers do."""
    import idna  # lazy: only non-ASCII hosts pay its import (~90 ms)

    try:
        return idna.encode(host, uts46=True, std3_rules=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        # "１２７。０。０。１" is not a valid IDNA name but UTS #46 still maps it to "127.0.0.1": a resolver
        # would reach it, so check it as such.
        try:
            mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise _invalid(field, "host is not a valid internationalised domain name") from None
        if mapped.isascii():
            return mapped
        raise _invalid(field, "host is not a valid internationalised domain name") from None


def parse_http_url(url: str, *, field: str, max_length: int = DEFAULT_MAX_URL_LENGTH) -> ParsedUrl:
    """Parse an absolute http(s) URL; raise InvalidRequest naming `field` when it is not one we accept.

    Refused: other schemes, credentials (`user:pass@`), over-long URLs, whitespace/control characters/backslashes,
    bad ports, malformed hosts. Whether plain http, the port and the address are allowed is policy
    (`net_guard.check_url`).
    """
    if not isinstance(url, str) or not url:
        raise _invalid(field, "a URL is required")
    if len(url) > max_length:
        raise _invalid(field, f"the URL is longer than {max_length} characters")
    if _UNSAFE_CHARS.search(url):
        raise _invalid(field, "the URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:  # urlsplit validates bracketed hosts itself
        raise _invalid(field, "not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _invalid(field, "only http(s) URLs are accepted")
    if not url[len(parts.scheme) + 1 :].startswith("//") or not parts.netloc:
        raise _invalid(field, "the URL has no host")
    netloc = parts.netloc
    if "@" in netloc:
        raise _invalid(field, "credentials in the URL are not allowed")
    host_part, port = _split_port(netloc, scheme, field=field)
    host = normalise_host(host_part, field=field)
    path = parts.path or "/"
    if not path.startswith("/"):
        raise _invalid(field, "the URL path must be absolute")
    if parts.query:
        path = f"{path}?{parts.query}"
    return ParsedUrl(scheme=scheme, host=host, port=port, path=path)


def _split_port(netloc: str, scheme: str, *, field: str) -> tuple[str, int]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _invalid(field, "unbalanced brackets in host")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _invalid(field, "unexpected characters after the IPv6 address")
        port_text = rest[1:] if rest else ""
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
        if ":" in host:
            raise _invalid(field, "IPv6 addresses must be written in brackets")
    else:
        host, port_text = netloc, ""
    if not port_text:
        return host, DEFAULT_PORTS[scheme]
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise _invalid(field, "the port must be a number from 1 to 65535")
    return host, int(port_text)
