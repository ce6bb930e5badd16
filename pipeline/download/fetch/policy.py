"""Which URLs the downloader may fetch, and which addresses it may connect to.

A crawl is full of URLs an attacker chose. Without a guard, ``http://169.254.169.254/`` reads
a cloud machine's credentials, ``http://10.0.0.5:8080/admin`` pokes the build cluster's own
network, and ``http://2130706433/`` is ``127.0.0.1`` in disguise. The policy here:

- only ``http`` and ``https``;
- the host is turned into addresses first (numeric hosts in every spelling the C resolver
  accepts: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``[::ffff:127.0.0.1]``; names through a
  resolver), and *every* address must pass;
- loopback and private ranges pass only with ``allow_private_networks``; link-local (cloud
  metadata), multicast, reserved, broadcast and unspecified addresses never pass;
- IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) are judged by that address.

The HTTP client (:mod:`openwit.pipeline.download.fetch.client`) connects only to an address this
module approved, re-checks the peer address after connecting, and applies the policy again
on every redirect hop, so a DNS answer that changes between check and connect cannot slip
through.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit

from openwit.funnel import Rejected

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``resolver(host, port) -> addresses`` (strings); the default asks the system resolver.
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

#: Address classes a private-network build (tests, the demo, an intranet) may reach.
PRIVATE_CLASSES = frozenset({"loopback", "private"})

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
#: What a browser percent-encodes in the path and in the query of an http(s) URL (the URL
#: Standard's path and special-query percent-encode sets): controls, space, non-ASCII and
#: these. Everything else, ``%`` included, is sent as written.
_PATH_ENCODED = ' "<>`{}'
_QUERY_ENCODED = " \"<>'"
_PRINTABLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))
_PATH_SAFE = "".join(c for c in _PRINTABLE_ASCII if c not in _PATH_ENCODED)
_QUERY_SAFE = "".join(c for c in _PRINTABLE_ASCII if c not in _QUERY_ENCODED)
_PATH_NEEDS_ENCODING = re.compile(f"[^{re.escape(_PATH_SAFE)}]")
_QUERY_NEEDS_ENCODING = re.compile(f"[^{re.escape(_QUERY_SAFE)}]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BlockedUrl(Rejected):
    """The policy refuses a URL; ``reason`` is the rejection reason (snake_case)."""


@dataclass(frozen=True)
class Target:
    """A URL the policy has parsed: what to connect to and what to ask for."""

    url: str
    scheme: str
    host: str  # as it goes into the Host header and TLS SNI (IPv6 without brackets)
    port: int
    request_path: str  # path and query, never empty
    literal: IPAddress | None  # set when the host is a numeric address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_ipv4_number(part: str) -> int | None:
    """One dotted part as the C resolver reads it: ``0x`` hex, leading ``0`` octal, else decimal."""
    if not part:
        return None
    base, digits = 10, part
    if part[:2].lower() == "0x":
        base, digits = 16, part[2:]
        if not digits:
            return None  # zero for browsers, no number for inet_aton: never guess
    elif len(part) > 1 and part[0] == "0":
        base, digits = 8, part[1:]
    allowed = "0123456789abcdef"[:base]
    if not all(c in allowed for c in digits.lower()):
        return None
    return int(digits, base)


def parse_ipv4_any_spelling(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host string spells, in any form ``inet_aton`` accepts, else None.

    ``127.0.0.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.01``, ``127.1`` all give
    ``127.0.0.1``: the last part fills the remaining bytes. Raises :class:`BlockedUrl`
    (``invalid_url``) for a host that ends in a number but is no valid address
    (``1.2.3.256``, ``foo.1``), which a resolver might still interpret.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts = parts[:-1]  # one trailing dot is allowed
    numbers = [parse_ipv4_number(p) for p in parts]
    if numbers[-1] is None:
        return None  # a name, not an address
    if len(numbers) > 4 or any(n is None for n in numbers):
        raise BlockedUrl("invalid_url", f"host {host!r} ends in a number but is no IPv4 address")
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):  # type: ignore[operator]
        raise BlockedUrl("invalid_url", f"host {host!r} is out of the IPv4 range")
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))  # type: ignore[operator]
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> IPAddress | None:
    """A numeric host as an address (IPv4 in any spelling, IPv6), or None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise BlockedUrl("invalid_url", f"host {host!r} is no IPv6 address") from None
    return parse_ipv4_any_spelling(host)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@functools.lru_cache(maxsize=4096)  # a pure function of the address, asked ~3 times a fetch
def address_class(address: IPAddress) -> str:
    """``public``, or why the address is special: loopback, private, link-local, ..."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return address_class(inner)
        if address in _IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified):
            return "reserved"  # deprecated ::a.b.c.d form
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return "private"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return "public"


def percent_encoded(text: str, safe: str, needs_encoding: re.Pattern[str]) -> str:
    """``text`` with every character outside ``safe`` percent-encoded as UTF-8, as a
    browser sends a path or query (a lone surrogate, which has no UTF-8, as U+FFFD)."""
    if needs_encoding.search(text) is None:
        return text  # the usual case: nothing to encode
    if not text.isascii():
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return quote(text, safe=safe)


def request_target(path: str, query: str) -> str:
    """The request target of a URL's path and query, percent-encoded as browsers do."""
    target = percent_encoded(path, _PATH_SAFE, _PATH_NEEDS_ENCODING) if path else "/"
    if query:
        target += "?" + percent_encoded(query, _QUERY_SAFE, _QUERY_NEEDS_ENCODING)
    return target


def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the system resolver, in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def _check_authority(parts: SplitResult, url: str) -> tuple[str, str, int, IPAddress | None]:
    """Scheme, host (as it goes into the Host header), port and numeric address of a URL's
    scheme and authority; :class:`BlockedUrl`, naming ``url``, if they are refused."""
    try:
        port = parts.port
    except ValueError as exc:
        raise BlockedUrl("invalid_url", f"{exc}: {url!r}"[:300]) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedUrl("blocked_url", f"scheme {scheme or '(none)'!r} is not http(s)")
    if parts.username is not None or parts.password is not None:
        raise BlockedUrl("blocked_url", "credentials in the URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedUrl("invalid_url", f"no host in {url!r}"[:300])
    if port == 0:
        raise BlockedUrl("invalid_url", "port 0")
    literal = parse_host(host)
    if literal is None and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").rstrip(".")
        except UnicodeError:
            raise BlockedUrl("invalid_url", f"host {host!r} is no valid name") from None
        # IDNA maps full-width and other look-alike digits to ASCII ones: the name may
        # now spell an address (``１２７.０.０.１``), and is judged as that address.
        literal = parse_host(host)
    if literal is None:
        if not _NAME_CHARS.issuperset(host) or ".." in host or host.startswith("."):
            raise BlockedUrl("invalid_url", f"host {host!r} is no valid name")
    host = str(literal) if literal is not None else host
    return scheme, host, port or DEFAULT_PORTS[scheme], literal


@functools.lru_cache(maxsize=8192)
def _approved_authority(scheme: str, netloc: str) -> tuple[str, str, int, IPAddress | None]:
    """:func:`_check_authority` of a URL's scheme and authority alone.

    A pure function of the two strings (parsing only, no name lookup), so its answers are
    kept; a refusal raises and is not kept (the caller raises it again, naming the URL).
    """
    return _check_authority(SplitResult(scheme, netloc, "", "", ""), "")


class UrlPolicy:
    """Parses URLs and approves the addresses the downloader may connect to."""

    def __init__(
        self, allow_private_networks: bool = False, resolver: Resolver | None = None
    ) -> None:
        self.allow_private_networks = allow_private_networks
        self.resolver = resolver or system_resolver

    def parse(self, url: str) -> Target:
        """Check the scheme and host of ``url``; :class:`BlockedUrl` if it is refused."""
        # Spaces and other characters a browser percent-encodes are encoded (the path and
        # query); line breaks, tabs and NUL are refused: in a crawl they mean a broken link.
        if not isinstance(url, str) or not url or any(c in url for c in "\r\n\t\x00"):
            raise BlockedUrl("invalid_url", f"not a URL: {url!r}"[:300])
        url = url.strip(" ")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise BlockedUrl("invalid_url", f"{exc}: {url!r}"[:300]) from None
        try:
            scheme, host, port, literal = _approved_authority(parts.scheme, parts.netloc)
        except Exception:  # refusals are not cached: this raises the one for ``url``
            scheme, host, port, literal = _check_authority(parts, url)
        path = request_target(parts.path, parts.query)
        return Target(
            url=url, scheme=scheme, host=host, port=port, request_path=path, literal=literal
        )

    def check_address(self, address: IPAddress | str) -> None:
        """:class:`BlockedUrl` unless the policy lets the downloader connect to ``address``."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address.split("%", 1)[0])
        kind = address_class(address)
        if kind == "public":
            return
        if kind in PRIVATE_CLASSES and self.allow_private_networks:
            return
        hint = " (allow_private_networks is off)" if kind in PRIVATE_CLASSES else ""
        raise BlockedUrl("blocked_url", f"address {address} is {kind}{hint}")

    def resolve(self, target: Target) -> list[IPAddress]:
        """The approved addresses of ``target``; every address the name has must pass.

        A name with one public and one private address is refused: that is what a
        DNS-rebinding attacker serves.
        """
        if target.literal is not None:
            addresses: list[IPAddress] = [target.literal]
        elif _is_localhost_name(target.host):
            addresses = [ipaddress.IPv4Address("127.0.0.1")]
        else:
            try:
                found = self.resolver(target.host, target.port)
            except OSError as exc:
                raise BlockedUrl("dns_error", f"{target.host}: {exc}") from None
            addresses = []
            for item in found:
                try:
                    addresses.append(ipaddress.ip_address(str(item).split("%", 1)[0]))
                except ValueError:
                    raise BlockedUrl("dns_error", f"{target.host}: bad address {item!r}") from None
            if not addresses:
                raise BlockedUrl("dns_error", f"{target.host}: no address")
        for address in addresses:
            try:
                self.check_address(address)
            except BlockedUrl as exc:
                raise BlockedUrl("blocked_url", f"{target.host} -> {exc.detail}") from None
        return addresses

    def check_url(self, url: str) -> list[IPAddress]:
        """Parse and resolve ``url``: the approved addresses, or :class:`BlockedUrl`."""
        return self.resolve(self.parse(url))
