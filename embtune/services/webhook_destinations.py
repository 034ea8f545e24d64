"""Where a webhook may be sent: the URL rules plus what its host resolves to.

Checked twice, on purpose: when an endpoint is registered (a clear 422 while someone is looking)
and again before every attempt, because a name that resolved to a public address at
registration can resolve to 127.0.0.1 later (DNS rebinding). The sender then connects to the
address it checked (`Destination.pinned_url`), not to whatever a second lookup returns.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from embtune.domain.webhooks import is_public_address, literal_address, url_problem

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[Address]]
PRIVATE_HINT = (
    "set EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS=true to allow receivers on loopback or private "
    "networks"
)


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])  # drop an IPv6 zone
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class Destination:
    """A URL judged sendable, and the address to connect to (None: connect by name, allowed
    only when private addresses are)."""

    url: str
    host: str
    address: Address | None

    def pinned_url(self) -> str:
        if self.address is None:
            return self.url
        parts = urlsplit(self.url)
        ip = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{ip}:{parts.port}" if parts.port else ip
        return urlunsplit(parts._replace(netloc=netloc))

    def host_header(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc.rsplit("@", 1)[-1]


class DestinationRefused(Exception):
    """The URL may not be sent to; the message says why (safe to show the caller)."""


def check_destination(
    url: str, *, allow_private: bool, resolver: Resolver = resolve, must_resolve: bool = True
) -> Destination:
    """The destination for `url`, or `DestinationRefused`. Unless private addresses are
    allowed, every address the host resolves to must be public (one private answer among
    public ones is how rebinding attacks start). `must_resolve=False` (registration) accepts
    a name that does not resolve yet: it is checked again before each attempt."""
    problem = url_problem(url)
    if problem is not None:
        raise DestinationRefused(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_private:
        return Destination(url, host, None)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    addresses = [literal] if literal is not None else resolver(host, port)
    if not addresses:
        if must_resolve:
            raise DestinationRefused(f"host {host!r} does not resolve")
        return Destination(url, host, None)
    internal = [a for a in addresses if not is_public_address(a)]
    if internal:
        raise DestinationRefused(
            f"host {host!r} is or resolves to a non-public address ({internal[0]}); "
            f"{PRIVATE_HINT}"
        )
    return Destination(url, host, addresses[0])
