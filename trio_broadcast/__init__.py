"""trio-broadcast: a real-time WebSocket broadcast server on Trio.

The supported API is what this module exports.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BroadcastError,
    CloseCode,
    CloseConnection,
    ConfigError,
    ErrorCode,
    PolicyViolationError,
    ProtocolError,
    SlowConsumerError,
)
from .server.config import Settings

if TYPE_CHECKING:
    from .server.app import BroadcastApp, create_app
    from .server.serve import ServerInfo, serve

# The server half (Quart, Hypercorn) loads on first use, so the client tools start quickly.
_LAZY = {
    "BroadcastApp": ".server.app",
    "create_app": ".server.app",
    "ServerInfo": ".server.serve",
    "serve": ".server.serve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BroadcastApp",
    "BroadcastError",
    "CloseCode",
    "CloseConnection",
    "ConfigError",
    "ErrorCode",
    "PolicyViolationError",
    "ProtocolError",
    "ServerInfo",
    "Settings",
    "SlowConsumerError",
    "__version__",
    "create_app",
    "serve",
]
