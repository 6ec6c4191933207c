"""Where a webhook may go: never to this machine or its private networks, unless the
operator allows it (PAYRAIL_WEBHOOKS_ALLOW_PRIVATE=1, for development and tests).

A merchant chooses the URL, so without this guard payrail would POST on their behalf to
its own database port, a cloud metadata service or an intranet. The URL's host is
checked when the endpoint is saved (literal addresses) and resolved and checked again
before every delivery, which then connects to the very address that was checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL = 2048
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: private in practice


class AddressRefused(Exception):
    """The host is, or resolves to, an address webhooks may not reach."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address} is {reason}")
        self.address = address
        self.reason = reason


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64): the packet
    ends up there, so that is the address to judge."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to this address, or None if they may."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return refusal(inner)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private or address in _SHARED),
        ("reserved", address.is_reserved),
        # fec0::/10: deprecated, but still routed inside some networks.
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    )
    for reason, applies in checks:
        if applies:
            return f"a {reason} address"
    # Documentation, benchmarking and other special ranges Python knows of.
    return None if address.is_global else "not a public address"


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without DNS, in any form the resolver accepts: 127.1,
    0x7f.0.0.1 and 2130706433 all reach 127.0.0.1."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).partition("%")[0])


def check_url(url: str, *, allow_private: bool) -> None:
    """An endpoint URL as saved: http(s), a host, no user info, and not a literal private
    address nor localhost. Raises ValueError with a message that does not quote the URL
    (it may carry a token)."""
    if len(url) > MAX_URL or not url.isascii() or any(c.isspace() for c in url):
        raise ValueError(f"must be an http or https URL of at most {MAX_URL} ASCII characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("must be an http or https URL with a valid host and port") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry user info (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("must name a host")
    if allow_private:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise ValueError("must not point at localhost")
    address = literal_address(host)
    if address is not None and (reason := refusal(address)) is not None:
        raise ValueError(f"must not point at {reason}")


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def pinned_address(
    host: str, port: int, *, allow_private: bool, resolve: Resolver = system_resolve
) -> str:
    """The address to connect to for `host`. Every address the name resolves to must be
    allowed, so a name that mixes public and private records is refused whichever one a
    client would have picked."""
    literal = literal_address(host)
    found = [str(literal)] if literal is not None else await resolve(host, port)
    if not found:
        raise AddressRefused(host, "a host that resolves to no address")
    if not allow_private:
        for text in found:
            reason = refusal(ipaddress.ip_address(text.partition("%")[0]))
            if reason is not None:
                raise AddressRefused(text, reason)
    return found[0]
