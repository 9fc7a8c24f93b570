"""The checks a ``/ws/events`` upgrade request must pass before it is accepted. Pure.

Hypercorn checks that a request is a WebSocket upgrade at all; this adds what it leaves out:
a well-formed ``Sec-WebSocket-Key`` (RFC 6455 4.2.1: base64 of 16 bytes), one header where one is
meaningful (``Origin``, ``Host``, the key: with two, which one a check saw and which one a proxy
or browser meant could differ), and the browser origin (:mod:`.origins`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable

import attrs

from .origins import origin_allowed

KEY_BYTES = 16  # a Sec-WebSocket-Key is the base64 of this many random bytes
SINGLE_HEADERS = ("host", "origin", "sec-websocket-key")  # at most one of each


@attrs.frozen
class Refusal:
    """Why an upgrade request is answered with an HTTP error instead of a WebSocket."""

    status: int  # the HTTP status: 400 malformed, 403 origin not allowed
    detail: str  # the response body, for the client
    reason: str  # the eviction counter's label and the log's reason


@attrs.frozen
class Handshake:
    """The parts of an upgrade request the checks look at."""

    headers: dict[str, list[str]]  # lower-case name -> every value, in order
    http_version: str = "1.1"  # "2" for RFC 8441 (no key there)

    @classmethod
    def from_scope(cls, headers: Iterable[tuple[bytes, bytes]], http_version: str) -> Handshake:
        """From an ASGI scope's ``headers`` and ``http_version``."""
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return cls(headers=values, http_version=http_version)

    def header(self, name: str) -> str | None:
        """The (first) value of a header, or None."""
        found = self.headers.get(name)
        return found[0] if found else None


def check(
    handshake: Handshake, *, allowed_origins: Collection[str], public_hosts: Collection[str]
) -> Refusal | None:
    """None if the request may be upgraded; otherwise how to refuse it."""
    for name in SINGLE_HEADERS:
        if len(handshake.headers.get(name, ())) > 1:
            return Refusal(400, f"more than one {name} header", "bad_handshake")
    if handshake.http_version == "1.1" and not key_valid(handshake.header("sec-websocket-key")):
        return Refusal(400, "Sec-WebSocket-Key must be the base64 of 16 bytes", "bad_handshake")
    if not origin_allowed(
        handshake.header("origin"), handshake.header("host"), allowed_origins, public_hosts
    ):
        return Refusal(403, "origin not allowed", "origin_rejected")
    return None


def key_valid(key: str | None) -> bool:
    """Whether ``key`` is a valid ``Sec-WebSocket-Key``: base64 of exactly 16 bytes."""
    if key is None:
        return False
    try:
        return len(base64.b64decode(key.strip(" \t"), validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):
        return False
