"""WebSocket frame headers (RFC 6455 §5.2), built without a protocol state machine.

The one frame encoder of the project: the server frames each broadcast once, unmasked, and writes
the same bytes to every subscriber; the bench and the tests frame what they send as a client,
masked (the bench with the all-zero key, which leaves the payload as it is).
"""

from __future__ import annotations

import base64
import os
import struct

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA
ZERO_MASK = b"\x00\x00\x00\x00"  # a valid masking key that leaves the payload unchanged


def frame_header(length: int, *, opcode: int = TEXT, fin: bool = True, mask: bytes = b"") -> bytes:
    """The header of a frame carrying ``length`` payload bytes; ``mask``: a client's 4-byte key."""
    first = (0x80 if fin else 0) | opcode
    masked = 0x80 if mask else 0
    if length < 126:
        return bytes((first, masked | length)) + mask
    if length < 1 << 16:
        return struct.pack("!BBH", first, masked | 126, length) + mask
    return struct.pack("!BBQ", first, masked | 127, length) + mask


PING_FRAME = bytes((0x80 | PING, 0))  # a server's ping with no payload


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (UTF-8): what a server sends."""
    return frame_header(len(payload)) + payload


def client_text_frame(payload: bytes) -> bytes:
    """A final text frame masked with the all-zero key: valid from a client, payload as is."""
    return frame_header(len(payload), mask=ZERO_MASK) + payload


def upgrade_request(host: str, target: str = "/ws/events", *, key: str | None = None) -> bytes:
    """A client's WebSocket upgrade request (RFC 6455 §4.1), for clients written on a bare
    socket (the bench, the fault tests). ``key``: a random one unless given."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
