"""Which browser origins may open a WebSocket (against cross-site WebSocket hijacking). Pure.

A browser page may connect when its origin is listed, or when it is the server's own. "The
server's own" cannot be read from the ``Host`` header alone: after DNS rebinding
(``evil.example`` made to resolve to the server's address), a page at ``http://evil.example``
sends ``Origin: http://evil.example`` *and* ``Host: evil.example``, so the two always agree. The
``Host`` is therefore trusted only when it names the server in a way a web page cannot
rebind: an IP address, ``localhost``, or one of the operator's ``public_hosts``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

LOCAL_NAMES = frozenset({"localhost"})  # names no DNS answer can rebind (RFC 6761)


def origin_allowed(
    origin: str | None,
    host: str | None,
    allowed: Collection[str],
    public_hosts: Collection[str] = (),
) -> bool:
    """Whether a handshake with this ``Origin`` header may proceed.

    No ``Origin`` (a script or CLI, not a browser) is allowed. A browser is allowed when its origin
    is listed in ``allowed`` (exact ``scheme://host[:port]``), or ``allowed`` contains ``"*"``, or
    it is the server's own: the origin's host:port equals the ``Host`` header, and that host is
    an IP address, ``localhost``, or in ``public_hosts`` (``"*"``: any).
    """
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if host is None or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False
    if _netloc(parts.scheme, parts.netloc) != _netloc(parts.scheme, host):
        return False
    return host_trusted(parts.hostname, public_hosts)


def host_trusted(hostname: str, public_hosts: Collection[str]) -> bool:
    """Whether ``hostname`` (no port; IPv6 without brackets) names this server for sure."""
    name = hostname.lower().rstrip(".")
    if "*" in public_hosts or name in LOCAL_NAMES:
        return True
    if name in {host.lower().rstrip(".") for host in public_hosts}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _netloc(scheme: str, netloc: str) -> str:
    """``host:port`` in lower case, with the scheme's default port made explicit."""
    netloc = netloc.lower()
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        netloc += ":443" if scheme == "https" else ":80"
    return netloc
