"""The Trio client library: :func:`open_client` and the events and errors it reports.

Its sans-I/O state machine is :mod:`.state`; the command-line tools are :mod:`.commands`, their
arguments :mod:`.args`. The library (and trio-websocket) loads on first use, so that
``trio-broadcast serve`` never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import (
        Ack,
        CertificateError,
        Client,
        ClientClosedError,
        ClientError,
        ClientStatistics,
        Connected,
        ConnectError,
        ConnectFailed,
        ConnectionLostError,
        Disconnected,
        Event,
        Gap,
        GapReason,
        HandshakeRejectedError,
        InvalidURLError,
        Limits,
        Message,
        MessageTooLargeError,
        NotConnectedError,
        OriginRejectedError,
        PublishError,
        PublishOutcomeUnknownError,
        PublishRejectedError,
        RateLimitedError,
        ReconnectPolicy,
        ServerProtocolError,
        TLSError,
        open_client,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".session", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Ack",
    "CertificateError",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ClientStatistics",
    "ConnectError",
    "ConnectFailed",
    "Connected",
    "ConnectionLostError",
    "Disconnected",
    "Event",
    "Gap",
    "GapReason",
    "HandshakeRejectedError",
    "InvalidURLError",
    "Limits",
    "Message",
    "MessageTooLargeError",
    "NotConnectedError",
    "OriginRejectedError",
    "PublishError",
    "PublishOutcomeUnknownError",
    "PublishRejectedError",
    "RateLimitedError",
    "ReconnectPolicy",
    "ServerProtocolError",
    "TLSError",
    "open_client",
]
