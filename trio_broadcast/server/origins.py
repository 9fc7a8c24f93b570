"""Which browser origins may open a WebSocket (against cross-site WebSocket hijacking). Pure."""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: Collection[str]) -> bool:
    """Whether a handshake with this ``Origin`` header may proceed.

    No ``Origin`` (a script or CLI, not a browser) is allowed. A browser is allowed when its origin
    is the server's own (the origin's host:port equals the ``Host`` header), or listed in
    ``allowed`` (exact ``scheme://host[:port]``), or ``allowed`` contains ``"*"``.
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
    return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host)


def _netloc(scheme: str, netloc: str) -> str:
    """``host:port`` in lower case, with the scheme's default port made explicit."""
    netloc = netloc.lower()
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        netloc += ":443" if scheme == "https" else ":80"
    return netloc
