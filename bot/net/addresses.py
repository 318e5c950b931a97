"""Which network addresses the bot may connect to on someone else's behalf.

Every download made for a member, and every request to an API server a guild admin named, goes out
through this one rule: only global unicast addresses, checked on the address actually connected (so a
name that resolves to a public address once and to 127.0.0.1 the next time is refused too). The
exceptions are the operator's KEY_ALLOWED_HOSTS `host:port` pairs and the exact origin (scheme, host,
port) of an upstream the operator configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(OSError):
    """A connection to a non-public address was refused. An OSError so that HTTP libraries pass it
    on as the cause of their connect error; `host` is what the URL said, never a resolved secret."""

    def __init__(self, host: str, address: str = "") -> None:
        self.host = host
        self.address = address
        shown = f"{host} ({address})" if address and address != host else host
        super().__init__(f"refused to connect to a non-public address: {shown}")


def is_public(address: IPAddress) -> bool:
    """True for global unicast only: not loopback, RFC 1918, link-local (169.254.169.254), CGNAT,
    ULA, multicast, reserved, unspecified, nor an IPv6 wrapper (IPv4-mapped, 6to4, NAT64, Teredo)
    around any of those. IPv4-mapped addresses are refused outright: they only ever mean IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return False
        embedded = address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host name spells, in every spelling a resolver accepts: 127.0.0.1, 127.1,
    2130706433, 0x7f000001, 0177.0.0.1, 0, [::ffff:127.0.0.1], fe80::1%eth0. None for a real name."""
    text = host.strip().rstrip(".").lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    # inet_aton is what getaddrinfo uses for numeric IPv4: it takes the short, decimal, hex and octal forms.
    if text and all(c in "0123456789abcdefx." for c in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


async def resolve(host: str, port: int, deadline: float | None = None) -> list[IPAddress]:
    """Every address `host` resolves to now (OSError or TimeoutError when it does not)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(deadline):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(sockaddr_address(info[4]) for info in infos))


def sockaddr_address(sockaddr: tuple[object, ...]) -> IPAddress:
    """The IP of a socket address tuple (IPv4 (host, port) or IPv6 (host, port, flow, scope))."""
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port of a URL: the unit an exception is granted for."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin | None:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        return cls(scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme])

    @property
    def pair(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(entry: str) -> str | None:
    """`host:port` or `[v6]:port`, normalised (lower case, no trailing dot); None when the port is
    missing or not a port number."""
    text = entry.strip().lower()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            return None
    host = host.rstrip(".")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"


@dataclass(slots=True)
class AddressPolicy:
    """The one rule for connections made on someone else's behalf.

    `allowed_pairs`: the operator's KEY_ALLOWED_HOSTS (`host:port`, any scheme). `trusted` origins
    are added at start for upstreams the operator configured (the .env API base URL): only that
    scheme, host and port; the same host on another port is refused like any other.
    """

    allowed_pairs: frozenset[str] = frozenset()
    trusted: set[Origin] = field(default_factory=set)

    @classmethod
    def trusting(cls, base_url: str) -> AddressPolicy:
        """A policy whose only exception is one upstream's exact origin (benchmarks, tools)."""
        policy = cls()
        policy.trust(base_url)
        return policy

    def trust(self, url: str) -> None:
        origin = Origin.of(url)
        if origin is not None:
            self.trusted.add(origin)

    def exempt(self, url: str) -> bool:
        """True when `url` may reach a private address: its pair is allowed or its origin trusted."""
        origin = Origin.of(url)
        return origin is not None and (origin.pair in self.allowed_pairs or origin in self.trusted)

    @staticmethod
    def check_address(host: str, address: IPAddress) -> None:
        if not is_public(address):
            raise AddressRefused(host, str(address))

    def check_literal(self, url: str) -> None:
        """Refuse at once a URL whose host spells a non-public address (unless exempt); names are
        checked when they are resolved and connected."""
        if self.exempt(url):
            return
        host = urlsplit(url.strip()).hostname or ""
        address = literal_address(host)
        if address is not None:
            self.check_address(host, address)
        elif host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
            raise AddressRefused(host)
