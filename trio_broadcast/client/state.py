"""The client side of the protocol as plain synchronous code: no sockets, no tasks, no clock.

:mod:`trio_broadcast.client` is a thin trio-websocket layer around this module. Everything that
decides something lives here, so it is tested without a server:

- :func:`websocket_url` / :func:`connect_url`: which URL to dial (resume and batch parameters).
- :func:`decode_frame`: server text frame -> wire records (a ``batch`` is flattened, in order).
- :class:`ClientState`: feeds on frames, yields the events a user sees (:class:`Message`,
  :class:`Gap`, :class:`Connected`), keeps the resume position (``epoch``/``last_seq``), drops
  duplicates, turns jumps into explicit gaps, and settles publishes (ack, error, replay).
- :class:`Backoff`: the reconnect schedule (exponential, full jitter, cap, reset when stable).

The exceptions the client raises, one tree::

    BroadcastError                 (trio_broadcast.errors)
    └── ClientError
        ├── InvalidURLError        the URL is not a ws://, wss://, http:// or https:// URL
        ├── ConnectError           could not connect (refused, DNS, timeout, HTTP refusal)
        │   ├── TLSError                  the TLS handshake failed (``wss://``)
        │   │   └── CertificateError      the server's certificate could not be verified
        │   └── HandshakeRejectedError    HTTP status instead of a WebSocket (``status``)
        │       └── OriginRejectedError   HTTP 403: this Origin is not allowed
        ├── ConnectionLostError    the connection ended and the client will not reconnect
        ├── NotConnectedError      a publish found no connection within ``publish_wait``
        ├── ClientClosedError      the client was closed
        ├── PublishError
        │   ├── MessageTooLargeError     over the server's ``max_message_bytes`` (not sent)
        │   ├── PublishRejectedError     the server answered an ``error`` frame (``code``)
        │   │   └── RateLimitedError
        │   └── PublishOutcomeUnknownError  sent, then the connection died and the server could
        │                                    not tell whether it was broadcast
        └── ServerProtocolError    the server sent something this client cannot understand
"""

from __future__ import annotations

import enum
import json
import random
import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from ..errors import BroadcastError, CloseCode
from ..wire.protocol import MAX_ID_LENGTH, dumps

DEFAULT_PATH = "/ws/events"  # the server's WebSocket endpoint


# -- errors ------------------------------------------------------------------------------------


class ClientError(BroadcastError):
    """Base class of the client's errors."""


class InvalidURLError(ClientError, ValueError):
    """The URL cannot name a trio-broadcast endpoint."""


class ConnectError(ClientError):
    """The client could not open a connection."""


class TLSError(ConnectError):
    """The TLS handshake of a ``wss://`` connection failed."""


class CertificateError(TLSError):
    """The server's certificate could not be verified (untrusted issuer, wrong host name,
    expired). Retrying does not help: trust its CA (``ssl_context``), or fix the URL."""


class HandshakeRejectedError(ConnectError):
    """The server answered the WebSocket handshake with an HTTP status."""

    def __init__(self, status: int, body: str = "") -> None:
        detail = f": {body}" if body else ""
        super().__init__(f"the server refused the WebSocket handshake with HTTP {status}{detail}")
        self.status = status  # the HTTP status code
        self.body = body  # the response body, decoded leniently


class OriginRejectedError(HandshakeRejectedError):
    """HTTP 403: the server does not allow this ``Origin``."""


class ConnectionLostError(ClientError):
    """The connection ended and the client will not reconnect."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the WebSocket close code, if one was received


class NotConnectedError(ClientError):
    """A publish could not be sent: no connection within the allowed wait."""


class ClientClosedError(ClientError):
    """The client was closed."""


class PublishError(ClientError):
    """A publish did not (or may not have) become a broadcast."""


class MessageTooLargeError(PublishError, ValueError):
    """The frame would exceed the server's ``max_message_bytes``; it was not sent."""


class PublishRejectedError(PublishError):
    """The server refused the publish with an ``error`` frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code  # the ``code`` of the error frame, e.g. ``rate_limited``
        self.detail = detail  # the server's explanation


class RateLimitedError(PublishRejectedError):
    """Over the server's publish rate; the message was not broadcast."""


class PublishOutcomeUnknownError(PublishError):
    """The publish was sent, the connection died, and resuming could not tell its fate."""


class ServerProtocolError(ClientError):
    """The server sent a frame that does not follow docs/protocol.md."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.outputs: list[Any] = []  # what the frames before the bad one produced: deliver it


def rejection(code: str, detail: str) -> PublishRejectedError:
    """The exception for an ``error`` frame."""
    if code == "rate_limited":
        return RateLimitedError(code, detail)
    return PublishRejectedError(code, detail)


# -- URLs --------------------------------------------------------------------------------------


def websocket_url(url: str) -> str:
    """Normalise what a user typed into the endpoint URL.

    ``http(s)://`` becomes ``ws(s)://``; an empty path becomes ``/ws/events``; a query string
    other than the client's own parameters is kept.

    Raises:
        InvalidURLError: not one of the four schemes, or no host.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidURLError("no URL given")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise InvalidURLError(f"invalid URL {url!r}: {error}") from None
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidURLError(
            f"invalid URL {url!r}: the scheme must be ws://, wss://, http:// or https://"
        )
    if not parts.hostname:
        raise InvalidURLError(f"invalid URL {url!r}: no host")
    del port  # parsed only to validate it
    path = parts.path if parts.path not in {"", "/"} else DEFAULT_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def connect_url(base: str, *, since: int | None, epoch: str | None, batch: bool) -> str:
    """``base`` (from :func:`websocket_url`) with the resume and batch query parameters."""
    parts = urlsplit(base)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in {"since", "epoch", "batch"}
    ]
    if since is not None and epoch is not None:
        query += [("since", str(since)), ("epoch", epoch)]
    if batch:
        query.append(("batch", "1"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# -- wire records (what the server sends) ------------------------------------------------------


@attrs.frozen
class Limits:
    """The limits in a welcome frame; ``None`` means no limit (or not told)."""

    max_message_bytes: int | None = None  # largest publish frame, bytes
    publish_rate: float | None = None  # messages per second
    publish_burst: int | None = None  # messages at once
    outbox_messages: int | None = None  # queued events before eviction (4008)
    outbox_bytes: int | None = None  # queued bytes before eviction (4008)
    history_size: int | None = None  # broadcasts kept for resume
    history_ttl: float | None = None  # seconds a broadcast stays resumable
    ping_interval: float | None = None  # seconds between server pings
    idle_timeout: float | None = None  # seconds of silence before the server drops us

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Limits:
        """Known, well-typed fields only; anything else is ignored (the server may add some)."""
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            value = data.get(field.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[field.name] = value
        return cls(**values)


@attrs.frozen
class WelcomeFrame:
    client_id: str
    seq: int
    epoch: str
    connections: int
    server: str
    batch: bool
    limits: Limits


@attrs.frozen
class MessageFrame:
    seq: int
    message: str
    timestamp: str
    sender: str


@attrs.frozen
class AckFrame:
    seq: int
    timestamp: str
    id: str | None


@attrs.frozen
class RecoveredFrame:
    complete: bool
    since: int
    replayed: int
    seq: int
    reason: str | None
    first_seq: int | None


@attrs.frozen
class ErrorFrame:
    code: str
    detail: str
    id: str | None = None  # the refused publish's id, when the server could read one


Frame: TypeAlias = WelcomeFrame | MessageFrame | AckFrame | RecoveredFrame | ErrorFrame


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ServerProtocolError(f"{data.get('type')} frame: {key!r} must be an integer")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ServerProtocolError(f"{data.get('type')} frame: {key!r} must be a string")
    return value


def _frame(data: Any) -> Frame | None:
    if not isinstance(data, dict):
        raise ServerProtocolError("a server frame must be a JSON object")
    kind = data.get("type")
    if kind == "message":
        return MessageFrame(
            seq=_int(data, "seq"),
            message=_str(data, "message"),
            timestamp=_str(data, "timestamp"),
            sender=_str(data, "sender"),
        )
    if kind == "ack":
        id_ = data.get("id")
        return AckFrame(
            seq=_int(data, "seq"),
            timestamp=_str(data, "timestamp"),
            id=id_ if isinstance(id_, str) else None,
        )
    if kind == "welcome":
        limits = data.get("limits")
        connections = data.get("connections")
        server = data.get("server")
        return WelcomeFrame(
            client_id=_str(data, "client_id"),
            seq=_int(data, "seq"),
            epoch=_str(data, "epoch"),
            connections=connections if isinstance(connections, int) else 0,
            server=server if isinstance(server, str) else "",
            batch=data.get("batch") is True,
            limits=Limits.from_mapping(limits if isinstance(limits, dict) else {}),
        )
    if kind == "recovered":
        reason = data.get("reason")
        first_seq = data.get("first_seq")
        return RecoveredFrame(
            complete=data.get("complete") is True,
            since=_int(data, "since"),
            replayed=_int(data, "replayed"),
            seq=_int(data, "seq"),
            reason=reason if isinstance(reason, str) else None,
            first_seq=first_seq if isinstance(first_seq, int) else None,
        )
    if kind == "error":
        detail = data.get("detail")
        id_ = data.get("id")
        return ErrorFrame(
            code=_str(data, "code"),
            detail=detail if isinstance(detail, str) else "",
            id=id_ if isinstance(id_, str) else None,
        )
    if not isinstance(kind, str):
        raise ServerProtocolError("a server frame needs a string 'type'")
    return None  # a type this client does not know: ignored, as the protocol asks


def decode_frame(text: str) -> list[Frame]:
    """The records in one server text frame: one, or several for a ``batch``.

    Unknown frame types are skipped; unknown fields are ignored.

    Raises:
        ServerProtocolError: not JSON, not an object, or a known type with bad fields.
    """
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ServerProtocolError(f"the server sent invalid JSON: {error}") from None
    if isinstance(data, dict) and data.get("type") == "batch":
        events = data.get("events")
        if not isinstance(events, list):
            raise ServerProtocolError("batch frame: 'events' must be a list")
        return [frame for frame in map(_frame, events) if frame is not None]
    frame = _frame(data)
    return [] if frame is None else [frame]


def encode_publish(message: str, id_: str | None) -> str:
    """The publish frame for ``message``."""
    data: dict[str, str] = {"message": message}
    if id_ is not None:
        data["id"] = id_
    return dumps(data)


# -- events (what a user of the client sees) ---------------------------------------------------


def parse_timestamp(text: str) -> datetime | None:
    """The server's ISO 8601 timestamp, or ``None`` when it does not parse."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@attrs.frozen
class Message:
    """Another client's broadcast."""

    seq: int  # position in ``epoch``; consecutive broadcasts have consecutive seqs
    epoch: str  # the server history this seq belongs to
    text: str  # the broadcast text
    timestamp: datetime | None  # server time of acceptance (UTC); None if unparsable
    sender: str  # the publisher's client_id
    replayed: bool = False  # delivered by a resume, not live


@attrs.frozen
class Ack:
    """Your publish was broadcast (returned by ``publish``)."""

    seq: int  # the broadcast's seq
    epoch: str  # the epoch of that seq
    timestamp: datetime | None  # server time of acceptance (UTC)
    id: str  # the publish id (given or generated)
    recovered: bool = False  # learnt from a resume replay after the ack itself was lost


GapReason: TypeAlias = Literal["history_expired", "epoch_mismatch", "sequence_jump"]


@attrs.frozen
class Gap:
    """Broadcasts this client will never see. Delivery continues after ``until``.

    Within one epoch the lost seqs are ``since + 1 .. until`` (``count`` of them). When the epoch
    changed (the server restarted) the number lost is unknown and ``count`` is ``None``.
    """

    reason: GapReason  # why: history too short, server restarted, or an unexplained jump
    previous_epoch: str  # the epoch ``since`` belongs to
    since: int  # the last seq seen before the gap
    epoch: str  # the epoch delivery continues in
    until: int  # the last seq lost in ``epoch``; the next message is ``until + 1``
    count: int | None  # broadcasts lost, when known


@attrs.frozen
class Connected:
    """A connection is open (the welcome frame arrived)."""

    client_id: str  # this connection's id; others see it as ``sender``
    epoch: str  # the server history
    seq: int  # the newest broadcast's seq at connect time
    connections: int  # clients connected, this one included
    server: str  # server name and version
    batch: bool  # batched frames are on
    limits: Limits  # what applies to this connection
    resumed: bool  # this connection asked to resume from ``since``/``epoch``
    attempt: int  # connection number, 1 for the first


@attrs.frozen
class Disconnected:
    """A connection ended."""

    code: int  # WebSocket close code; 1006 when the connection ended without one
    reason: str  # human-readable
    reconnect_in: float | None  # seconds until the next attempt; None: the client stops


@attrs.frozen
class ConnectFailed:
    """A reconnect attempt failed."""

    error: str  # what went wrong
    attempt: int  # consecutive failed attempts
    reconnect_in: float  # seconds until the next attempt


Event: TypeAlias = Message | Gap | Connected | Disconnected | ConnectFailed


def describe_close(code: int | None) -> str:
    """A short, human-readable reading of a close code."""
    known: dict[int, str] = {
        CloseCode.NORMAL: "closed normally",
        CloseCode.GOING_AWAY: "the server is shutting down",
        CloseCode.POLICY_VIOLATION: "policy violation (publishing over the rate limit)",
        CloseCode.MESSAGE_TOO_BIG: "a frame was larger than max_message_bytes",
        CloseCode.INTERNAL_ERROR: "internal server error",
        CloseCode.SERVICE_RESTART: "the server's shared history was lost (a new epoch)",
        CloseCode.TRY_AGAIN_LATER: "the server is at max_connections",
        CloseCode.SLOW_CONSUMER: "evicted as a slow consumer",
    }
    if code is None:
        return "connection lost without a close frame"
    text = known.get(code)
    return f"{text} ({code})" if text else f"closed with code {code}"


# -- the state machine -------------------------------------------------------------------------


class PublishStatus(enum.Enum):
    UNSENT = "unsent"  # waits for a ready connection
    IN_FLIGHT = "in_flight"  # sent on the current connection
    UNCERTAIN = "uncertain"  # sent on a connection that died before the answer came
    SETTLED = "settled"  # ``outcome`` is set


@attrs.define(eq=False)
class PendingPublish:
    """One publish between ``add_publish`` and its outcome."""

    id: str  # sent as ``id``, echoed in the ack
    message: str  # the text
    frame: str  # the encoded publish frame
    status: PublishStatus = PublishStatus.UNSENT
    abandoned: bool = False  # the caller gave up; the answer is absorbed silently
    outcome: Ack | PublishError | None = None  # set when SETTLED


@attrs.frozen
class Ready:
    """Signal: the connection may carry publishes (after welcome, and after ``recovered``)."""


@attrs.frozen
class ReconnectNow:
    """Signal: close this connection and dial again at once (``since`` needed the epoch)."""


@attrs.frozen
class Settled:
    """Signal: the publish ``id`` has an outcome."""

    id: str


Output: TypeAlias = Event | Ready | ReconnectNow | Settled


class Phase(enum.Enum):
    DISCONNECTED = "disconnected"
    WELCOME = "welcome"  # connected, waiting for the welcome frame
    REPLAYING = "replaying"  # resumed: replayed messages until ``recovered``
    LIVE = "live"


@attrs.frozen
class ClientStatistics:
    """Counters of one client since it was created."""

    connections: int  # connections that got a welcome
    epoch: str | None  # the current epoch
    last_seq: int | None  # the highest seq seen (message or ack) in ``epoch``
    messages: int  # Message events produced
    replayed: int  # ... of which came from a resume
    duplicates: int  # seq-bearing frames dropped as already seen
    gaps: int  # Gap events produced
    lost: int  # broadcasts known lost (sum of Gap.count where known)
    acks: int  # publishes acknowledged
    rejected: int  # publishes refused by an error frame


class ClientState:
    """Protocol bookkeeping for one logical client across its connections.

    Feed it with :meth:`connection_opened`, :meth:`receive` and :meth:`connection_lost`; it
    returns :data:`Output` values in the order the user must see them.

    Guarantees to the user, whatever the server does: every :class:`Message` has a seq greater
    than the previous one in its epoch; a seq is never delivered twice; whenever seqs are skipped,
    a :class:`Gap` says so before the next message.
    """

    def __init__(
        self,
        *,
        batch: bool = True,
        since: int | None = None,
        epoch: str | None = None,
        id_prefix: str | None = None,
    ) -> None:
        if since is not None and since < 0:
            raise ValueError("since must not be negative")
        if epoch is not None and since is None:
            raise ValueError("epoch needs since")
        self.batch = batch  # ask for batched frames
        self.epoch: str | None = epoch  # the history ``last_seq`` belongs to
        self.last_seq: int | None = since  # highest seq seen (message or ack)
        self.phase = Phase.DISCONNECTED
        self.welcome: WelcomeFrame | None = None  # of the current connection
        self.limits: Limits | None = None  # of the last connection, kept while disconnected
        self.client_ids: set[str] = set()  # every id this client had: its own replays
        self._probe = since is not None and epoch is None  # since without epoch: learn it first
        self._resuming = False  # the current connection was dialled with since/epoch
        self._gap_reported = False  # a gap was already reported for the current resume
        self._new_epoch: str | None = None  # the server restarted: its epoch, until replay starts
        self._id_prefix = id_prefix if id_prefix is not None else secrets.token_hex(4) + "-"
        self._next_id = 0
        self._pending: dict[str, PendingPublish] = {}  # in send order
        self._unassigned_errors: list[ErrorFrame] = []  # error frames not yet matched
        self._connections = 0
        self._counts = dict.fromkeys(
            ("messages", "replayed", "duplicates", "gaps", "lost", "acks", "rejected"), 0
        )

    # -- connection lifecycle ------------------------------------------------------------------

    def connect_url(self, base: str) -> str:
        """The URL for the next connection: resume from the last seq seen, when there is one."""
        if self._probe:
            return connect_url(base, since=None, epoch=None, batch=self.batch)
        return connect_url(base, since=self.last_seq, epoch=self.epoch, batch=self.batch)

    def connection_opened(self) -> None:
        """A WebSocket is open; the welcome frame comes next."""
        self.phase = Phase.WELCOME
        self.welcome = None
        self._resuming = not self._probe and self.epoch is not None and self.last_seq is not None
        self._gap_reported = False
        self._new_epoch = None
        self._unassigned_errors.clear()

    def connection_lost(self, code: int | None = None) -> list[Output]:
        """The connection ended (``code``: the close code received, if any).

        Publishes in flight become uncertain until the next resume tells their fate; after a
        1009 (a frame was too big) they fail instead, so that they are not sent again.
        """
        self.phase = Phase.DISCONNECTED
        self.welcome = None
        out: list[Output] = []
        for entry in list(self._pending.values()):
            if entry.status is not PublishStatus.IN_FLIGHT:
                continue
            if code == CloseCode.MESSAGE_TOO_BIG:
                too_big = MessageTooLargeError(
                    "the server closed the connection (1009): a frame was over its "
                    "max_message_bytes"
                )
                self._settle(entry, too_big, out)
            else:
                entry.status = PublishStatus.UNCERTAIN
        self._unassigned_errors.clear()
        return out

    @property
    def ready(self) -> bool:
        """Publishes may be sent now."""
        return self.phase is Phase.LIVE

    # -- frames --------------------------------------------------------------------------------

    def receive(self, text: str) -> list[Output]:
        """Take one server text frame.

        Raises:
            ServerProtocolError: the frame is malformed or out of place; its ``outputs`` hold
                what the events before the bad one produced (a batch is applied in order).
        """
        out: list[Output] = []
        try:
            for frame in decode_frame(text):
                self._frame(frame, out)
        except ServerProtocolError as error:
            error.outputs = out  # already applied to the state: must still reach the user
            raise
        return out

    def _frame(self, frame: Frame, out: list[Output]) -> None:
        if self.phase is Phase.DISCONNECTED:
            raise ServerProtocolError("a frame arrived while no connection is open")
        if self.phase is Phase.WELCOME:
            if not isinstance(frame, WelcomeFrame):
                raise ServerProtocolError(f"expected a welcome frame first, got {frame!r}")
            self._welcome(frame, out)
        elif isinstance(frame, MessageFrame):
            self._message(frame, out)
        elif isinstance(frame, AckFrame):
            self._ack(frame, out)
        elif isinstance(frame, RecoveredFrame):
            self._recovered(frame, out)
        elif isinstance(frame, ErrorFrame):
            self._error(frame, out)
        else:
            raise ServerProtocolError("a second welcome frame arrived")

    def _welcome(self, frame: WelcomeFrame, out: list[Output]) -> None:
        self.welcome = frame
        self.limits = frame.limits
        self.client_ids.add(frame.client_id)
        if self._probe:
            self._probe = False
            self.epoch = frame.epoch
            assert self.last_seq is not None
            if self.last_seq < frame.seq:  # there is something to replay: dial again with since
                self.phase = Phase.DISCONNECTED
                out.append(ReconnectNow())
                return
            self.last_seq = frame.seq
        self._connections += 1
        out.append(
            Connected(
                client_id=frame.client_id,
                epoch=frame.epoch,
                seq=frame.seq,
                connections=frame.connections,
                server=frame.server,
                batch=frame.batch,
                limits=frame.limits,
                resumed=self._resuming,
                attempt=self._connections,
            )
        )
        if not self._resuming:
            # Fresh start: what happened before this connection is not this client's business.
            self.epoch = frame.epoch
            self.last_seq = frame.seq
            self.phase = Phase.LIVE
            self._settle_uncertain(out, replay_complete=False)
            out.append(Ready())
            return
        if frame.epoch != self.epoch:
            # The server restarted. It replays what it kept of its new history: the gap reaches
            # up to the first broadcast replayed (or to the end of the replay, if none is).
            self._new_epoch = frame.epoch
        self.phase = Phase.REPLAYING

    def _enter_new_epoch(self, out: list[Output], until: int) -> None:
        """Report the gap of a server restart, once, before anything of the new epoch."""
        if self._new_epoch is not None:
            self._gap(out, "epoch_mismatch", until=until, epoch=self._new_epoch)
            self._new_epoch = None

    def _seq(self, seq: int, out: list[Output]) -> bool:
        """Check ``seq`` against the position; False for a duplicate. May add a Gap first."""
        assert self.last_seq is not None
        if seq <= self.last_seq:
            self._counts["duplicates"] += 1
            return False
        if seq > self.last_seq + 1:
            reason: GapReason = (
                "history_expired" if self.phase is Phase.REPLAYING else ("sequence_jump")
            )
            self._gap(out, reason, until=seq - 1)
        self.last_seq = seq
        return True

    def _gap(
        self, out: list[Output], reason: GapReason, *, until: int, epoch: str | None = None
    ) -> None:
        assert self.epoch is not None
        assert self.last_seq is not None
        new_epoch = self.epoch if epoch is None else epoch
        count = (
            until - self.last_seq if new_epoch == self.epoch and until >= self.last_seq else None
        )
        out.append(
            Gap(
                reason=reason,
                previous_epoch=self.epoch,
                since=self.last_seq,
                epoch=new_epoch,
                until=until,
                count=count,
            )
        )
        self._counts["gaps"] += 1
        self._counts["lost"] += count or 0
        self._gap_reported = True
        self.epoch = new_epoch
        self.last_seq = until

    def _message(self, frame: MessageFrame, out: list[Output]) -> None:
        self._enter_new_epoch(out, until=frame.seq - 1)
        if not self._seq(frame.seq, out):
            return
        assert self.epoch is not None
        replayed = self.phase is Phase.REPLAYING
        if frame.sender in self.client_ids:
            # One of our own publishes, replayed after its ack was lost with the connection.
            self._own_replay(frame, out)
            return
        self._counts["messages"] += 1
        self._counts["replayed"] += replayed
        out.append(
            Message(
                seq=frame.seq,
                epoch=self.epoch,
                text=frame.message,
                timestamp=parse_timestamp(frame.timestamp),
                sender=frame.sender,
                replayed=replayed,
            )
        )

    def _own_replay(self, frame: MessageFrame, out: list[Output]) -> None:
        assert self.epoch is not None
        for entry in self._pending.values():
            if entry.status is PublishStatus.UNCERTAIN and entry.message == frame.message:
                ack = Ack(
                    seq=frame.seq,
                    epoch=self.epoch,
                    timestamp=parse_timestamp(frame.timestamp),
                    id=entry.id,
                    recovered=True,
                )
                self._settle(entry, ack, out)
                return

    def _ack(self, frame: AckFrame, out: list[Output]) -> None:
        self._enter_new_epoch(out, until=frame.seq - 1)
        if not self._seq(frame.seq, out):
            return
        entry = self._pending.get(frame.id) if frame.id is not None else None
        if entry is None:
            entry = next(self._in_flight(), None) if frame.id is None else None
        if entry is None or entry.status is not PublishStatus.IN_FLIGHT:
            return
        # Frames are processed in order: an in-flight publish sent before this one that is still
        # open was refused, and its error frame has already arrived.
        for earlier in list(self._in_flight()):
            if earlier is entry:
                break
            if self._unassigned_errors:
                error = self._unassigned_errors.pop(0)
                self._settle(earlier, rejection(error.code, error.detail), out)
        assert self.epoch is not None
        ack = Ack(
            seq=frame.seq, epoch=self.epoch, timestamp=parse_timestamp(frame.timestamp), id=entry.id
        )
        self._settle(entry, ack, out)
        self._assign_errors(out)

    def _error(self, frame: ErrorFrame, out: list[Output]) -> None:
        # A refusal of a publish the server could read (rate_limited) names it by its id.
        entry = self._pending.get(frame.id) if frame.id is not None else None
        if entry is not None and entry.status is PublishStatus.IN_FLIGHT:
            self._settle(entry, rejection(frame.code, frame.detail), out)
            return
        # Without an id: the server refuses frames in the order it reads them, and an error can
        # overtake the acks of earlier publishes (those wait for the broadcaster), so it is
        # matched once that is unambiguous: see _ack and _assign_errors.
        if next(self._in_flight(), None) is None:
            return  # nothing of ours is in flight: not about a publish
        self._unassigned_errors.append(frame)
        self._assign_errors(out)

    def _assign_errors(self, out: list[Output]) -> None:
        """When every open publish must have been refused, settle them with the errors in order."""
        in_flight = list(self._in_flight())
        if self._unassigned_errors and len(self._unassigned_errors) >= len(in_flight):
            for entry in in_flight:
                error = self._unassigned_errors.pop(0)
                self._settle(entry, rejection(error.code, error.detail), out)
            self._unassigned_errors.clear()

    def _recovered(self, frame: RecoveredFrame, out: list[Output]) -> None:
        if self.phase is not Phase.REPLAYING:
            return  # not asked for; ignore
        self._enter_new_epoch(out, until=frame.seq)
        assert self.epoch is not None
        assert self.last_seq is not None
        if not frame.complete:
            if frame.reason == "history_expired":
                first = frame.first_seq if frame.first_seq is not None else frame.seq + 1
                if first - 1 > self.last_seq:
                    self._gap(out, "history_expired", until=first - 1)
            elif not self._gap_reported:
                # epoch_mismatch in the same epoch: our since was ahead of the server.
                self._gap(out, "epoch_mismatch", until=frame.seq)
            elif frame.seq > self.last_seq:
                self._gap(out, "sequence_jump", until=frame.seq)
        self.phase = Phase.LIVE
        self._settle_uncertain(out, replay_complete=frame.complete)
        out.append(Ready())

    # -- publishing ----------------------------------------------------------------------------

    def add_publish(self, message: str, id_: str | None = None) -> PendingPublish:
        """Register a publish; it is sent by the I/O layer once :attr:`ready`.

        Raises:
            ValueError: ``id_`` is too long or already pending.
            MessageTooLargeError: over the connected server's ``max_message_bytes``.
        """
        if id_ is None:
            self._next_id += 1
            id_ = f"{self._id_prefix}{self._next_id}"
        elif len(id_) > MAX_ID_LENGTH:
            raise ValueError(f"a publish id has at most {MAX_ID_LENGTH} characters")
        if id_ in self._pending:
            raise ValueError(f"a publish with id {id_!r} is already pending")
        frame = encode_publish(message, id_)
        limit = self.limits.max_message_bytes if self.limits else None
        if limit is not None:
            size = len(frame) if frame.isascii() else len(frame.encode())
            if size > limit:
                raise MessageTooLargeError(
                    f"the publish frame is {size} bytes; the server accepts at most {limit}"
                )
        entry = PendingPublish(id=id_, message=message, frame=frame)
        self._pending[id_] = entry
        return entry

    def mark_sent(self, entry: PendingPublish) -> None:
        """The entry's frame was handed to the current connection."""
        entry.status = PublishStatus.IN_FLIGHT

    def discard(self, entry: PendingPublish) -> None:
        """The caller stopped waiting. An unsent entry is forgotten; a sent one is kept
        (abandoned) so that its answer is recognised and absorbed."""
        if entry.status in {PublishStatus.UNSENT, PublishStatus.SETTLED}:
            self._pending.pop(entry.id, None)
        else:
            entry.abandoned = True

    def pending(self) -> list[PendingPublish]:
        """Publishes without an outcome, in send order."""
        return [e for e in self._pending.values() if e.status is not PublishStatus.SETTLED]

    def _in_flight(self) -> Iterator[PendingPublish]:
        return (e for e in self._pending.values() if e.status is PublishStatus.IN_FLIGHT)

    def _settle(
        self, entry: PendingPublish, outcome: Ack | PublishError, out: list[Output]
    ) -> None:
        if isinstance(outcome, Ack):
            self._counts["acks"] += 1
        elif isinstance(outcome, PublishRejectedError):
            self._counts["rejected"] += 1
        if entry.abandoned:
            self._pending.pop(entry.id, None)
            return
        entry.status = PublishStatus.SETTLED
        entry.outcome = outcome
        self._pending.pop(entry.id, None)
        out.append(Settled(entry.id))

    def _settle_uncertain(self, out: list[Output], *, replay_complete: bool) -> None:
        """After a resume: uncertain publishes not seen in the replay were not broadcast (resend
        them) when the replay was complete; otherwise nobody can tell."""
        for entry in list(self._pending.values()):
            if entry.status is not PublishStatus.UNCERTAIN:
                continue
            if entry.abandoned:
                self._pending.pop(entry.id)
            elif replay_complete:
                entry.status = PublishStatus.UNSENT
            else:
                unknown = PublishOutcomeUnknownError(
                    "the connection was lost after sending; the server could not replay enough "
                    "history to tell whether the message was broadcast"
                )
                self._settle(entry, unknown, out)

    # -- introspection -------------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            connections=self._connections, epoch=self.epoch, last_seq=self.last_seq, **self._counts
        )


# -- reconnect schedule ------------------------------------------------------------------------


@attrs.frozen
class ReconnectPolicy:
    """How a client waits between connection attempts.

    Exponential backoff with full jitter: attempt ``n`` (from 0) waits a uniform random time in
    ``[0, min(cap, initial * factor ** n)]``, so that many clients dropped together do not come
    back in lock-step. A connection that stayed up ``stable_after`` seconds resets the schedule.
    """

    initial: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))  # seconds
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    cap: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))  # seconds
    stable_after: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))  # seconds
    max_attempts: int | None = None  # consecutive failed attempts before giving up; None: never


class Backoff:
    """The schedule of one client (see :class:`ReconnectPolicy`). Pure: the caller passes time
    and may pass a seeded ``random.Random``."""

    def __init__(self, policy: ReconnectPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempt = 0  # waits handed out since the last reset
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self) -> float:
        """The longest the next wait can be."""
        policy = self.policy
        # min() before the power would overflow for large attempts; cap the exponent instead.
        exponent = min(self.attempt, 64)
        return min(policy.cap, policy.initial * policy.factor**exponent)

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; advances the schedule."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def connection_ended(self, lasted: float) -> None:
        """A connection that was up ``lasted`` seconds ended; a stable one resets the schedule."""
        if lasted >= self.policy.stable_after:
            self.attempt = 0

    def exhausted(self, failures: int) -> bool:
        """Whether ``failures`` consecutive failed attempts mean giving up."""
        limit = self.policy.max_attempts
        return limit is not None and failures >= limit
