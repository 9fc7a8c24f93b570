"""The client's address behind trusted reverse proxies. Pure.

A proxy connects on the client's behalf and names the client in a header: ``X-Forwarded-For``
(nginx, HAProxy, Caddy, cloud load balancers) or ``Forwarded`` (RFC 7239). Anyone can send those
headers, so they are read only when the TCP peer is a proxy the operator listed, and only as far
as the chain of listed proxies goes: the list is read from the right (the entry the nearest proxy
added) and the first address that is not a trusted proxy is the client. ``X-Forwarded-For`` is
preferred when both are present; a proxy must append to (or replace) the header it sets, never
pass a client's own copy through alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The proxies whose forwarding headers are believed (from ``Settings.trusted_proxies``)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in networks
        )  # raises ValueError for a malformed entry (Settings has checked them)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusted(self, address: str) -> bool:
        """Whether ``address`` (an IP address, possibly with a port) is a listed proxy."""
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str, headers: Mapping[str, Sequence[str]]) -> str | None:
        """The client's address as the trusted proxies tell it, or None if they do not.

        Args:
            peer: the TCP peer's IP address.
            headers: lower-case header name -> every value (repeated headers form one list).
        """
        if not self.trusted(peer):
            return None
        chain = _x_forwarded_for(headers.get("x-forwarded-for", ()))
        if not chain:
            chain = _forwarded_for(headers.get("forwarded", ()))
        for hop in reversed(chain):
            if not self.trusted(hop):
                return hop
        return chain[0] if chain else None  # only proxies: the first one is as near as it gets


def _x_forwarded_for(values: Iterable[str]) -> list[str]:
    return [_strip_port(hop.strip()) for value in values for hop in value.split(",") if hop.strip()]


def _forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` of every element of RFC 7239 ``Forwarded`` headers, in order."""
    chain = []
    for value in values:
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, token = pair.strip().partition("=")
                if name.lower() == "for" and token:
                    chain.append(_strip_port(token.strip().strip('"')))
    return chain


def _strip_port(address: str) -> str:
    """``1.2.3.4:5`` -> ``1.2.3.4``, ``[::1]:5`` -> ``::1``; anything else unchanged."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def _ip(address: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(_strip_port(address))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket is 10.0.0.1
    return ip
