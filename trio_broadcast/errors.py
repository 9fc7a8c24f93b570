"""The exceptions trio-broadcast raises, and the wire form of each.

::

    BroadcastError
    ├── ConfigError          a setting is invalid (raised at start-up)
    ├── BackplaneUnavailableError  Redis (``redis_url``) cannot be reached; at start-up it stops
    │                        the server, later publishes get ``backplane_unavailable``
    ├── ProtocolError        a client frame is refused: an ``error`` reply, connection stays open
    └── CloseConnection      the connection must end: carries the WebSocket close code
        ├── SlowConsumerError    the client's outbox overflowed (4008)
        └── PolicyViolationError sustained abuse, e.g. publishing over the rate limit (1008)

An error that reaches a client knows its wire form: ``ProtocolError.code`` is the ``code`` field
of the JSON ``error`` frame, ``CloseConnection.close_code`` the WebSocket close code.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Every close code the server sends (documented in docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    PROTOCOL_ERROR = 1002  # a frame that breaks RFC 6455 (reserved bits, bad opcode, ...)
    INVALID_PAYLOAD = 1007  # a text message that is not UTF-8
    POLICY_VIOLATION = 1008  # sustained rate-limit abuse
    MESSAGE_TOO_BIG = 1009  # message over max_message_bytes
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the backplane lost its history (new epoch): reconnect and resume
    TRY_AGAIN_LATER = 1013  # at max_connections
    SLOW_CONSUMER = 4008  # outbox overflowed


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` frame."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_MESSAGE = "invalid_message"
    INVALID_ID = "invalid_id"
    UNKNOWN_FIELD = "unknown_field"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    RATE_LIMITED = "rate_limited"
    BACKPLANE_UNAVAILABLE = "backplane_unavailable"  # the publish could not reach the backplane


class BroadcastError(Exception):
    """Base class of every trio-broadcast error."""


class ConfigError(BroadcastError, ValueError):
    """A setting is missing, malformed or out of range."""


class BackplaneUnavailableError(BroadcastError):
    """The backplane (``redis_url``) could not be reached, or did not answer in time."""


class ProtocolError(BroadcastError):
    """A client frame was refused; the client gets an ``error`` frame and stays connected."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code  # the ``code`` field of the error frame
        self.detail = detail  # human-readable explanation, sent as ``detail``


class CloseConnection(BroadcastError):
    """The connection must be closed with ``close_code``."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR

    def __init__(self, reason: str, close_code: CloseCode | None = None) -> None:
        super().__init__(reason)
        if close_code is not None:
            self.close_code = close_code
        self.reason = reason  # sent as the close reason (at most 123 bytes)


class SlowConsumerError(CloseConnection):
    """The client did not keep up: its outbox overflowed."""

    close_code = CloseCode.SLOW_CONSUMER


class PolicyViolationError(CloseConnection):
    """The client kept breaking a limit after being told."""

    close_code = CloseCode.POLICY_VIOLATION
