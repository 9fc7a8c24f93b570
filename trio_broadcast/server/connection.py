"""One client connection: a reader task and a writer task in a nursery of their own.

Framework-free: it talks to a :class:`Transport` (an ASGI WebSocket in production), so the whole
lifecycle is exercised by tests without a socket. The reader validates and publishes; the writer
drains the client's outbox, coalescing queued events into one ``batch`` frame for clients that
opted in. Whichever way the connection ends (client close, reset, eviction, cancellation,
shutdown) the ``finally`` takes the subscriber out of the hub.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import structlog
import trio

from ..errors import CloseCode, CloseConnection, ErrorCode, PolicyViolationError, ProtocolError
from ..ratelimit import Verdict
from ..wire.protocol import Outgoing, Publish, encode_batch, encode_error
from .hub import Bundle, Hub, SharedFrame, Subscriber, Subscription, TickPass

log = structlog.get_logger("trio_broadcast.server.connection")

REPLAY_CHUNK = 256  # replayed messages per batch frame
CLOSE_TIMEOUT = 2.0  # seconds a closed client gets to send its close reply
BINARY_REFUSED = ProtocolError(
    ErrorCode.BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON text"
)


class TransportClosed(Exception):
    """The client's side of the connection is gone (it closed, or the socket broke)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code  # the client's close code; 1006 (or None) when there was none
        self.reason = reason  # the client's close reason


class TransportFailed(Exception):
    """What the client sent cannot be taken: close the connection with ``close.close_code``.

    Raised by :meth:`Transport.receive` for a message over the size limit (1009) or a frame that
    breaks the protocol (1002, 1007 for bad UTF-8).
    """

    def __init__(self, code: int, reason: str, *, wait_for_reply: bool) -> None:
        super().__init__(code, reason)
        known = code in CloseCode._value2member_map_
        self.close = CloseConnection(
            reason, CloseCode(code) if known else CloseCode.PROTOCOL_ERROR
        )  # what to close with
        self.wait_for_reply = wait_for_reply  # False: the client's frames can no longer be read


class Transport(Protocol):
    """The few WebSocket operations a connection needs."""

    async def receive(self) -> str | bytes | None:
        """The next client frame: ``str`` for text, ``bytes`` (or ``None``) for binary.

        Raises:
            TransportClosed: the client is gone; nothing more will be received or delivered.
            TransportFailed: the client sent what cannot be taken; the connection must close.
        """

    async def send(self, frame: str) -> None:
        """Send one text frame."""

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame."""

    @property
    def sends_nowait(self) -> bool:
        """Whether :meth:`send_nowait` can send at all (otherwise it always refuses)."""

    def send_nowait(self, frame: str) -> Sent:
        """Send one text frame now if that needs no waiting; never blocks.

        ``REFUSED``: nothing was sent (use :meth:`send`). ``PARTLY``: the frame is committed but
        its end waits in the transport until :meth:`flush`.
        """

    async def flush(self) -> None:
        """Wait until what :meth:`send_nowait` left over is written."""


class Sent(enum.Enum):
    """What :meth:`Transport.send_nowait` did."""

    WHOLE = "whole"  # the frame is written
    PARTLY = "partly"  # the frame is committed; its end waits for flush()
    REFUSED = "refused"  # nothing was written


@attrs.frozen
class ConnectParams:
    """What the client asked for in the handshake's query string."""

    since: int | None = None  # resume after this seq
    epoch: str | None = None  # ... of this epoch
    batch: bool = False  # opt in to batched frames
    last: int | None = None  # replay this many of the newest broadcasts (capped by the history)

    @classmethod
    def from_query(cls, query: dict[str, str]) -> ConnectParams:
        """Validate the query string.

        Raises:
            ValueError: ``since`` or ``last`` is not a non-negative integer, or ``since`` comes
                without ``epoch``.
        """
        since_text = query.get("since")
        epoch = query.get("epoch") or None
        since = None
        if since_text is not None:
            if not since_text.isdigit():
                raise ValueError("'since' must be a non-negative integer")
            since = int(since_text)
            if epoch is None:
                raise ValueError("'since' needs the 'epoch' it belongs to")
        last_text = query.get("last")
        last = None
        if last_text is not None:
            if not last_text.isdigit():
                raise ValueError("'last' must be a non-negative integer")
            last = int(last_text)
        return cls(since=since, epoch=epoch, batch=query.get("batch") == "1", last=last)


LatencyObserver = Callable[[float], None]


async def run_connection(
    hub: Hub,
    transport: Transport,
    params: ConnectParams,
    *,
    peer: str = "",
    observe_latency: LatencyObserver | None = None,
) -> None:
    """Serve one client until it leaves, is dropped, or this call is cancelled.

    A checkpoint; cancelling it is safe and leaves the hub without this client.
    """
    hub.session_opened()
    try:
        await _serve_client(hub, transport, params, peer, observe_latency)
    finally:
        hub.session_closed()


async def _serve_client(
    hub: Hub,
    transport: Transport,
    params: ConnectParams,
    peer: str,
    observe_latency: LatencyObserver | None,
) -> None:
    try:
        subscription = hub.subscribe(
            batch=params.batch, since=params.since, epoch=params.epoch, last=params.last
        )
    except CloseConnection as refusal:
        log.info("refused", peer=peer, code=int(refusal.close_code), reason=refusal.reason)
        await transport.close(refusal.close_code, refusal.reason)
        return
    subscriber = subscription.subscriber
    log.info(
        "connected",
        client_id=subscriber.client_id,
        peer=peer,
        batch=params.batch,
        resume=params.since is not None,
        connections=hub.connection_count,
    )
    client_closed: TransportClosed | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _write, hub, subscription, transport, nursery.cancel_scope, observe_latency
            )
            try:
                reply_expected = await _read(hub, subscriber, transport)
            except TransportClosed as closed:
                client_closed = closed
                nursery.cancel_scope.cancel()  # nobody left to write to
        if client_closed is None and reply_expected:
            client_closed = await _await_close_reply(transport)
    finally:
        hub.unsubscribe(subscriber)
        subscriber.inbox.close()
        closing = subscriber.closing
        code: int | None
        if closing is not None:  # we closed: our code
            by, code, reason = "server", int(closing.close_code), closing.reason
        elif client_closed is not None:
            by, code, reason = "client", client_closed.code, client_closed.reason
        else:  # cancelled
            by, code, reason = "server", None, "cancelled"
        log.info(
            "disconnected",
            client_id=subscriber.client_id,
            peer=peer,
            by=by,
            code=code,
            reason=reason,
            connections=hub.connection_count,
        )


async def _read(hub: Hub, subscriber: Subscriber, transport: Transport) -> bool:
    """Take client frames until the connection must close. Errors go back to the client.

    Returns whether the client's frames can still be read (a close reply can come).
    """
    while subscriber.closing is None:
        try:
            data = await transport.receive()
        except TransportFailed as failure:
            reason = failure.close.close_code.name.lower()
            hub.count_eviction(reason)
            log.warning("evicted", client_id=subscriber.client_id, reason=reason)
            hub.disconnect(subscriber, failure.close)
            return failure.wait_for_reply
        if not isinstance(data, str):
            _refuse(hub, subscriber, BINARY_REFUSED)
            continue
        try:
            publish = Publish.from_text(data)
        except ProtocolError as error:
            _refuse(hub, subscriber, error)
            continue
        verdict = subscriber.limiter.check(trio.current_time())
        if verdict is Verdict.ABUSE:
            hub.count_eviction("rate_abuse")
            log.warning("evicted", client_id=subscriber.client_id, reason="rate_abuse")
            hub.disconnect(subscriber, PolicyViolationError("publishing over the rate limit"))
            return True
        if verdict is Verdict.REFUSE:
            rate = subscriber.limiter.rate
            _refuse(
                hub,
                subscriber,
                ProtocolError(ErrorCode.RATE_LIMITED, f"over {rate} messages/s; message dropped"),
                id_=publish.id,
            )
            continue
        try:
            await hub.submit(subscriber, publish)
        except trio.ClosedResourceError:  # shutting down: the writer sends 1001
            return True
    return True


async def _await_close_reply(transport: Transport) -> TransportClosed | None:
    """After our close frame: discard what the client still sends until its close reply.

    Closing the socket while the client's frames are unread would reset it, and a reset can
    destroy our close frame before the client reads it. Waits ``CLOSE_TIMEOUT`` at most.
    Returns how the client closed, or None if it did not in time.
    """
    with trio.move_on_after(CLOSE_TIMEOUT):
        while True:
            try:
                await transport.receive()
            except TransportClosed as closed:
                return closed
            except TransportFailed as failure:
                if not failure.wait_for_reply:
                    return None
    return None


def _refuse(hub: Hub, subscriber: Subscriber, error: ProtocolError, id_: str | None = None) -> None:
    hub.count_error(error.code)
    log.info("client_error", client_id=subscriber.client_id, code=str(error.code))
    hub.reply(subscriber, encode_error(error.code, error.detail, id_))


async def _write(
    hub: Hub,
    subscription: Subscription,
    transport: Transport,
    connection_scope: trio.CancelScope,
    observe_latency: LatencyObserver | None,
) -> None:
    """Send the welcome, any replay, then the outbox; finally the close frame.

    Ends the connection (cancels ``connection_scope``) when it is done, whatever the reason.
    """
    subscriber = subscription.subscriber
    try:
        await _send_events(hub, transport, [subscription.welcome], batch=False)
        replay = [entry.frame for entry in subscription.replay]
        step = REPLAY_CHUNK if subscriber.batch else 1
        for start in range(0, len(replay), step):
            await _send_events(hub, transport, replay[start : start + step], batch=True)
        if subscription.recovery is not None:
            await _send_events(hub, transport, [subscription.recovery.encode()], batch=False)
        await _drain(hub, subscriber, transport, observe_latency)
        closing = subscriber.closing or CloseConnection("closed", CloseCode.NORMAL)
        await transport.close(closing.close_code, closing.reason)
    finally:
        connection_scope.cancel()


async def _send_events(hub: Hub, transport: Transport, frames: list[str], *, batch: bool) -> None:
    """Send encoded events: one as itself, several as one ``batch`` frame (when ``batch``)."""
    if len(frames) == 1 or not batch:
        for frame in frames:
            await transport.send(frame)
        hub.count_written(len(frames), len(frames))
    else:
        await transport.send(encode_batch(frames))
        hub.count_written(1, len(frames))


async def _drain(
    hub: Hub,
    subscriber: Subscriber,
    transport: Transport,
    observe_latency: LatencyObserver | None,
) -> None:
    """Send outbox entries until the hub closes the outbox.

    A batching client is written by the hub's tick whenever the hub has one, the transport can
    send without waiting, and nothing is queued (see :func:`_coalesce`); this writer steps in
    when the tick hands the client back: the socket did not take a frame at once, or a reply
    waits. A batching client gets everything queued when the writer wakes, as one frame.
    """
    inbox = subscriber.inbox
    batch = subscriber.batch
    tick_writes = batch and transport.sends_nowait
    while True:
        if tick_writes and not subscriber.queued and hub.can_park(subscriber):
            await _coalesce(hub, subscriber, transport, observe_latency)
            if subscriber.closing is not None:
                return
            continue
        waited = False
        try:  # after a hand-back events may be waiting: no extra scheduling round for them
            first = inbox.receive_nowait()
        except trio.WouldBlock:
            waited = True
            try:
                first = await inbox.receive()
            except trio.EndOfChannel:
                return
        except trio.EndOfChannel:
            return
        if subscriber.closing is not None:
            return
        _took(subscriber, first)
        entries = list(first.entries)
        if batch:
            entries += _flatten(_take_queued(subscriber))
        if batch:
            await _send_events(hub, transport, [entry.frame for entry in entries], batch=True)
        else:
            for entry in entries:  # one frame each, until the hub closes the connection
                if subscriber.closing is not None:
                    return
                await _send_events(hub, transport, [entry.frame], batch=False)
        if observe_latency is not None:
            observe_latency(trio.current_time() - entries[0].created)
        if not waited:
            await trio.lowlevel.checkpoint()  # one per frame at least, as ``receive`` would


async def _coalesce(
    hub: Hub,
    subscriber: Subscriber,
    transport: Transport,
    observe_latency: LatencyObserver | None,
) -> None:
    """Leave the writing to the hub's tick until it hands the connection back.

    At every tick pass the hub calls ``write_nowait``, which sends everything queued since the
    last one as one frame (a lone event as itself), without waiting. It hands back (returns
    False) when the frame cannot be written without waiting: then this writer sends it, and
    the connection's own back-pressure applies again. A checkpoint.
    """
    unsent: list[str] = []  # drained, but the transport could not take them without waiting
    flush = False  # the last frame was only partly written

    def write_nowait(tick: TickPass) -> bool:
        nonlocal flush
        if subscriber.closing is not None:
            return False
        bundles = _take_queued(subscriber)
        if not bundles:
            return True
        # Subscribers that were handed the same bundles since the last tick (all those that
        # keep up, as a rule) are written the same text: it is built once per tick.
        frame = tick.frames.get(bundles)
        if frame is None:
            entries = _flatten(bundles)
            text = (
                entries[0].frame
                if len(entries) == 1
                else encode_batch([entry.frame for entry in entries])
            )
            frame = tick.frames[bundles] = SharedFrame(text, len(entries), entries[0].created)
        sent = transport.send_nowait(frame.text)
        if sent is Sent.REFUSED:
            unsent.extend(entry.frame for entry in _flatten(bundles))
            return False
        tick.frames_out += 1
        tick.messages_out += frame.events
        if observe_latency is not None:
            observe_latency(tick.now - frame.created)
        flush = sent is Sent.PARTLY
        return not flush

    try:
        await hub.park(subscriber, write_nowait)
    finally:
        hub.unpark(subscriber)
    if flush:
        await transport.flush()
    if unsent:
        await _send_events(hub, transport, unsent, batch=True)


def _take_queued(subscriber: Subscriber) -> tuple[Bundle, ...]:
    """Everything in the subscriber's outbox right now, taken without waiting."""
    if not subscriber.queued:
        return ()
    receive_nowait = subscriber.inbox.receive_nowait
    bundles = []
    while subscriber.queued:  # every bundle holds an event: no WouldBlock to raise and catch
        bundle = receive_nowait()
        _took(subscriber, bundle)
        bundles.append(bundle)
    return tuple(bundles)


def _took(subscriber: Subscriber, bundle: Bundle) -> None:
    subscriber.queued -= len(bundle.entries)
    subscriber.queued_bytes -= bundle.size


def _flatten(bundles: Sequence[Bundle]) -> list[Outgoing]:
    return [entry for bundle in bundles for entry in bundle.entries]
