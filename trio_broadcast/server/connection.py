"""One client connection: a reader task, and a writer task while something is queued, in a
nursery of their own.

Framework-free: it talks to a :class:`Transport` (an ASGI WebSocket in production), so the whole
lifecycle is exercised by tests without a socket. The reader validates and publishes. A writer
(:class:`_Writer`) sends the welcome and any replay, then whatever the hub queues in the client's
outbox: everything waiting in one write when the transport writes bytes (:class:`RawWriter`), and
hands the client back to the hub's pass whenever it has caught up, and ends (see the state table
in :mod:`.hub`). Whichever
way the connection ends (client close, reset, eviction, cancellation, shutdown) the ``finally``
takes the subscriber out of the hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs
import structlog
import trio

from ..errors import CloseCode, CloseConnection, ErrorCode, PolicyViolationError, ProtocolError
from ..ratelimit import Verdict
from ..wire.frames import text_frame
from ..wire.protocol import Publish, encode_error
from .hub import DirectWriter, Hub, Subscriber, Subscription
from .outbox import Bundle

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
        try:
            close_code = CloseCode(code)
        except ValueError:  # a code wsproto knows and we do not send: a protocol error still
            close_code = CloseCode.PROTOCOL_ERROR
        self.close = CloseConnection(reason, close_code)  # what to close with
        self.wait_for_reply = wait_for_reply  # False: the client's frames can no longer be read


class RawWriter(DirectWriter, Protocol):
    """Writes whole WebSocket frames, as bytes, to the client's socket."""

    async def write(self, data: bytes) -> bool:
        """Write ``data`` (after anything :meth:`write_nowait` left over), waiting for room.

        Returns False, writing nothing, when frames can no longer be written as bytes (the
        connection is closing): send text frames instead.
        """


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
    def raw(self) -> RawWriter | None:
        """Writes frames as bytes, if the transport can: many in one write, or from the hub's
        pass without waiting. None: every frame goes through :meth:`send`."""


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


class Session:
    """One accepted client: its subscriber, what its frames do, and its end.

    Driven by a reader task (:func:`run_connection`), or by the server itself for a connection
    whose frames it delivers without a task of the app's (see :mod:`.endpoint`). Either way a
    writer task (:class:`Writer`) runs beside it only while something is queued.
    """

    __slots__ = ("client_closed", "finished", "hub", "observe_latency", "peer", "subscriber")

    def __init__(
        self,
        hub: Hub,
        subscriber: Subscriber,
        peer: str,
        observe_latency: LatencyObserver | None,
    ) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.peer = peer  # for logs
        self.observe_latency = observe_latency
        # How the client closed: its code and reason (kept, not the exception: an exception
        # held by a frame its traceback holds is a reference cycle, garbage until a full
        # collection).
        self.client_closed: tuple[int | None, str] | None = None
        self.finished = False  # the subscriber has left the hub

    async def take(self, data: str | bytes | None) -> bool:
        """One client frame: validated, rate limited and published, or refused with an error
        frame. False when no more frames are to be read (evicted over the rate limit, or the
        server is shutting down). Blocks only while the hub's intake is full."""
        hub, subscriber = self.hub, self.subscriber
        if not isinstance(data, str):
            _refuse(hub, subscriber, BINARY_REFUSED)
            return True
        try:
            publish = Publish.from_text(data)
        except ProtocolError as error:
            _refuse(hub, subscriber, error)
            return True
        verdict = subscriber.limiter.check(trio.current_time())
        if verdict is Verdict.ABUSE:
            hub.count_eviction("rate_abuse")
            log.warning("evicted", client_id=subscriber.client_id, reason="rate_abuse")
            hub.disconnect(subscriber, PolicyViolationError("publishing over the rate limit"))
            return False
        if verdict is Verdict.REFUSE:
            rate = subscriber.limiter.rate
            _refuse(
                hub,
                subscriber,
                ProtocolError(ErrorCode.RATE_LIMITED, f"over {rate} messages/s; message dropped"),
                id_=publish.id,
            )
            return True
        try:
            await hub.submit(subscriber, publish)
        except trio.ClosedResourceError:  # shutting down: the writer sends 1001
            return False
        return True

    def fail(self, failure: TransportFailed) -> None:
        """What the client sent cannot be taken: the writer closes with ``failure``'s code."""
        reason = failure.close.close_code.name.lower()
        self.hub.count_eviction(reason)
        log.warning("evicted", client_id=self.subscriber.client_id, reason=reason)
        self.hub.disconnect(self.subscriber, failure.close)

    def finish(self) -> None:
        """The subscriber leaves the hub, and the end is logged (once; never blocks)."""
        if self.finished:
            return
        self.finished = True
        hub, subscriber = self.hub, self.subscriber
        subscriber.outbox.close_taking()  # first: the hub's close of it starts no writer now
        hub.unsubscribe(subscriber)
        closing = subscriber.closing
        code: int | None
        if closing is not None:  # we closed: our code
            by, code, reason = "server", int(closing.close_code), closing.reason
        elif self.client_closed is not None:
            by, (code, reason) = "client", self.client_closed
        else:  # cancelled
            by, code, reason = "server", None, "cancelled"
        log.info(
            "disconnected",
            client_id=subscriber.client_id,
            peer=self.peer,
            by=by,
            code=code,
            reason=reason,
            connections=hub.connection_count,
        )


def subscribe(
    hub: Hub,
    transport: Transport,
    params: ConnectParams,
    peer: str,
) -> Subscription:
    """Register an accepted client with the hub, and log it.

    Raises:
        CloseConnection: refused (see :meth:`.Hub.subscribe`): close with its code.
    """
    try:
        subscription = hub.subscribe(
            batch=params.batch,
            since=params.since,
            epoch=params.epoch,
            last=params.last,
            writer=transport.raw,
        )
    except CloseConnection as refusal:
        log.info("refused", peer=peer, code=int(refusal.close_code), reason=refusal.reason)
        raise
    log.info(
        "connected",
        client_id=subscription.subscriber.client_id,
        peer=peer,
        batch=params.batch,
        resume=params.since is not None,
        connections=hub.connection_count,
    )
    return subscription


async def run_connection(
    hub: Hub,
    transport: Transport,
    params: ConnectParams,
    *,
    peer: str = "",
    observe_latency: LatencyObserver | None = None,
) -> None:
    """Serve one client until it leaves, is dropped, or this call is cancelled: a reader (this
    task) and a writer task while something is queued, in a nursery of their own.

    A checkpoint; cancelling it is safe and leaves the hub without this client.
    """
    hub.session_opened()
    try:
        try:
            subscription = subscribe(hub, transport, params, peer)
        except CloseConnection as refusal:
            await transport.close(refusal.close_code, refusal.reason)
            return
        session = Session(hub, subscription.subscriber, peer, observe_latency)
        try:
            await _serve(session, transport, subscription)
        finally:
            session.finish()
    finally:
        hub.session_closed()


async def _serve(session: Session, transport: Transport, subscription: Subscription) -> None:
    # Whether the client's close reply can still come; also when the writer ended the
    # connection (our close frame sent) and the reader was cancelled mid-receive.
    reply_expected = True
    async with trio.open_nursery() as nursery:

        async def end() -> None:
            nursery.cancel_scope.cancel()

        writer = Writer(session, transport, nursery.start_soon, end, nursery.cancel_scope.cancel)
        writer.start(subscription)
        del subscription  # the writer has it; not kept here for the connection's life
        try:
            reply_expected = await _read(session, transport)
        except TransportClosed as closed:
            session.client_closed = closed.code, closed.reason
            nursery.cancel_scope.cancel()  # nobody left to write to
        finally:
            writer.stop()  # the nursery closes once a running writer ends
    if session.client_closed is None and reply_expected:
        session.client_closed = await await_close_reply(transport)


async def _read(session: Session, transport: Transport) -> bool:
    """Take client frames until the connection must close. Errors go back to the client.

    Returns whether the client's frames can still be read (a close reply can come).
    """
    subscriber = session.subscriber
    while subscriber.closing is None:
        try:
            data = await transport.receive()
        except TransportFailed as failure:
            session.fail(failure)
            return failure.wait_for_reply
        if not await session.take(data):
            return True
    return True


async def await_close_reply(transport: Transport) -> tuple[int | None, str] | None:
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
                return closed.code, closed.reason
            except TransportFailed as failure:
                if not failure.wait_for_reply:
                    return None
    return None


def _refuse(hub: Hub, subscriber: Subscriber, error: ProtocolError, id_: str | None = None) -> None:
    hub.count_error(error.code)
    log.info("client_error", client_id=subscriber.client_id, code=str(error.code))
    hub.reply(subscriber, encode_error(error.code, error.detail, id_))


Spawn = Callable[[Callable[[Subscription | None], Awaitable[None]], Subscription | None], object]


class Writer:
    """A connection's writer: a task beside the connection, only while the client is QUEUED
    (see the state table in :mod:`.hub`).

    The first sends the welcome and any replay. Each writes what the hub queued, everything
    waiting in one write, until the outbox is empty; then, if the hub's pass can write to the
    client directly (DIRECT), it ends, and the outbox starts the next one when something is
    queued again (``Outbox.on_ready``). So an idle client, or one the pass keeps up with, has
    no writer task. Without a direct writer (``Transport.raw`` is None) the first writer waits
    for the outbox for the connection's whole life.

    ``spawn`` starts a task beside the connection. After a writer has sent the close frame it
    awaits ``end()``; if it fails, it calls ``abort()`` (both end the connection).
    """

    __slots__ = ("_abort", "_end", "_running", "_session", "_spawn", "_transport")

    def __init__(
        self,
        session: Session,
        transport: Transport,
        spawn: Spawn,
        end: Callable[[], Awaitable[None]],
        abort: Callable[[], None],
    ) -> None:
        self._session = session
        self._transport = transport
        self._spawn = spawn
        self._end = end
        self._abort = abort
        self._running = False  # a writer task is running

    def start(self, subscription: Subscription) -> None:
        """Start the first writer: the welcome and any replay, then the outbox."""
        self._first()
        self._spawn(self._write, subscription)

    async def greet(self, subscription: Subscription) -> None:
        """Be the first writer in the caller's task (no task to start): the welcome and any
        replay, then the outbox, until the client is handed to the pass or closed."""
        self._first()
        await self._write(subscription)

    def _first(self) -> None:
        """The first writer runs; from now on a put starts one when none does."""
        self._running = True
        self._session.subscriber.outbox.on_ready = self._wake

    def stop(self) -> None:
        """Start no more writers (the connection is ending; one running goes on to its end)."""
        self._session.subscriber.outbox.on_ready = None

    def _wake(self) -> None:
        """Something was queued, or the outbox closed: start a writer unless one runs."""
        if not self._running:
            self._running = True
            self._spawn(self._write, None)

    async def _write(self, subscription: Subscription | None) -> None:
        try:
            closed = await self._write_until_idle(subscription)
        except BaseException:
            self._running = False
            self._abort()
            raise
        self._running = False
        if closed:
            await self._end()

    async def _write_until_idle(self, subscription: Subscription | None) -> bool:
        """Greet (the first writer), then write what is queued until the client is handed back
        to the pass (False) or closed (True: the close frame was sent)."""
        session, transport = self._session, self._transport
        hub, subscriber = session.hub, session.subscriber
        outbox = subscriber.outbox
        if subscription is not None:
            await _greet(hub, transport, subscription)
            del subscription  # the welcome and the replay list: not kept meanwhile
        while subscriber.closing is None:
            bundles = outbox.take_nowait()
            if bundles:
                await _send_bundles(hub, transport, subscriber, bundles)
                if session.observe_latency is not None and bundles[0].entries:
                    session.observe_latency(trio.current_time() - bundles[0].entries[0].created)
            elif outbox.closed:
                break
            elif hub.writer_idle(subscriber):  # DIRECT: the pass writes from now on
                return False
            else:  # no direct writer: this task waits for the outbox
                await outbox.wait()
        closing = subscriber.closing or CloseConnection("closed", CloseCode.NORMAL)
        await transport.close(closing.close_code, closing.reason)
        return True


async def _greet(hub: Hub, transport: Transport, subscription: Subscription) -> None:
    """Send the welcome, any replay (a batch frame per chunk for a batching client), and the
    ``recovered`` frame."""
    subscriber = subscription.subscriber
    await _send_texts(hub, transport, [subscription.welcome])
    replay = subscription.replay
    step = REPLAY_CHUNK if subscriber.batch else max(1, len(replay))
    for start in range(0, len(replay), step):
        await _send_bundles(hub, transport, subscriber, [Bundle(replay[start : start + step])])
    if subscription.recovery is not None:
        await _send_texts(hub, transport, [subscription.recovery.encode()])


async def _send_texts(hub: Hub, transport: Transport, frames: list[str]) -> None:
    """Send text frames: in one write when the transport writes bytes."""
    raw = transport.raw
    if raw is None or not await raw.write(b"".join(text_frame(f.encode()) for f in frames)):
        for frame in frames:
            await transport.send(frame)
    hub.count_written(len(frames), len(frames))


async def _send_bundles(
    hub: Hub, transport: Transport, subscriber: Subscriber, bundles: Sequence[Bundle]
) -> None:
    """Send queued bundles: in one write when the transport writes bytes. A batching client
    gets all of them in one ``batch`` frame."""
    batch = subscriber.batch
    if batch and len(bundles) > 1:
        bundles = [Bundle([entry for bundle in bundles for entry in bundle.entries])]
    messages = sum(len(bundle.entries) for bundle in bundles)
    frames = sum(1 for bundle in bundles if bundle.entries) if batch else messages
    raw = transport.raw
    if raw is not None and await raw.write(b"".join(bundle.wire(batch) for bundle in bundles)):
        hub.count_written(frames, messages)
        return
    for bundle in bundles:
        for text in bundle.texts(batch):
            if subscriber.closing is not None:  # evicted meanwhile: the rest is not sent
                return
            await transport.send(text)
            hub.count_written(1, len(bundle.entries) if batch else 1)
