"""trio-broadcast: a real-time WebSocket broadcast server on Trio.

The supported API is what this module exports.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .app import BroadcastApp, create_app
from .config import Settings
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
from .server import ServerInfo, serve

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
