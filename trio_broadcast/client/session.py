"""A Trio client for trio-broadcast, on trio-websocket: reconnects, resumes, never loses silently.

::

    async with open_client("ws://127.0.0.1:8000/ws/events") as client:
        ack = await client.publish("hello")          # Ack(seq=42, ...)
        async for event in client:                   # Message, Gap, Connected, Disconnected, ...
            ...

What the client promises (the decisions live in :mod:`trio_broadcast.client_state`):

- **Exactly once, in order, or an explicit gap.** After a drop (server restart, eviction as a
  slow consumer, a network hiccup) it reconnects and resumes from the last ``seq``/``epoch`` it
  saw. Messages come out in ``seq`` order without duplicates; whatever the server could not
  replay is announced by a :class:`Gap` event before the next message.
- **Reconnect with exponential backoff and full jitter**, capped, reset after a stable
  connection (:class:`ReconnectPolicy`), so a thousand clients do not return in lock-step.
- **Publishing** returns the server's :class:`Ack`. While disconnected, a publish waits up to
  ``publish_wait`` seconds for a connection (0: fail at once) and then raises
  :class:`NotConnectedError`. A publish caught by a drop is resolved by the resume: acked if the
  replay shows it, re-sent if the complete replay proves it was not broadcast, else
  :class:`PublishOutcomeUnknownError`.
- **Cancellation-safe.** Leaving the ``async with`` (normally, by an exception or by
  cancellation) closes the WebSocket with code 1000 within ``close_timeout`` seconds and leaves
  no task behind.
- **Batched frames** (``batch=1``) are requested by default; ``batch=False`` turns them off.

Back-pressure: events wait in a buffer of ``event_buffer`` entries. A consumer that does not keep
up stops the client reading its socket, so the server eventually evicts it (4008) and the client
resumes: slow is lossless, within the server's history. A client that only publishes should pass
``receive=False`` so that broadcasts are discarded instead of buffered.
"""

from __future__ import annotations

import contextlib
import math
import random
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import ParamSpec
from urllib.parse import urlsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from .state import (
    Ack,
    Backoff,
    CertificateError,
    ClientClosedError,
    ClientError,
    ClientState,
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
    Output,
    PendingPublish,
    PublishError,
    PublishOutcomeUnknownError,
    PublishRejectedError,
    PublishStatus,
    RateLimitedError,
    Ready,
    ReconnectNow,
    ReconnectPolicy,
    ServerProtocolError,
    Settled,
    TLSError,
    describe_close,
    websocket_url,
)

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

MIB = 1024 * 1024
P = ParamSpec("P")
PROTOCOL_ERROR = 1002  # WebSocket close code: we could not understand the server
ABNORMAL_CLOSURE = 1006  # what trio-websocket reports when there was no close frame
RECEIVE_BYTES = 64 * 1024  # read size; trio-websocket's 4 KiB default costs a loop per 4 KiB
HANDSHAKE_HEADERS = frozenset(  # written by the handshake itself (and every sec-websocket-*)
    {"host", "origin", "upgrade", "connection"}  # origin: the ``origin`` argument
)


def _resource(url: str) -> str:
    """The request target of ``url``: path and query."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@attrs.define(eq=False)
class _Connection:
    """One open WebSocket, owned by its task in the client's shielded host nursery."""

    ws: WebSocketConnection  # the socket; the manager reads it, publishers write it
    opened_at: float  # trio.current_time() when the handshake completed
    close_requested: trio.Event = attrs.Factory(trio.Event)  # tells the owner task to close
    close_code: int = 1000  # the code the owner task closes with
    finished: trio.Event = attrs.Factory(trio.Event)  # set when the owner task has closed it
    welcomed: bool = False  # a welcome frame arrived on it
    close_received: int | None = None  # the close code the server sent, once it has
    lost_reason: str | None = None  # why we gave up on it ourselves (keepalive)


def _connect_error(error: BaseException, url: str, timeout: float) -> ConnectError:
    """A trio-websocket handshake failure as the client's own error."""
    if isinstance(error, ConnectionRejected):
        body = (error.body or b"").decode("utf-8", "replace").strip()
        if error.status_code == 403:
            return OriginRejectedError(403, body or "origin not allowed")
        return HandshakeRejectedError(error.status_code, body)
    if isinstance(error, ConnectionTimeout):
        return ConnectError(f"no WebSocket handshake with {url} within {timeout:g} s")
    cause = error.__cause__ if isinstance(error, HandshakeError) else error
    if _refused(cause):
        return ConnectError(f"connection refused by {url} (is the server running?)")
    if isinstance(cause, OSError):
        return ConnectError(f"cannot connect to {url}: {cause.strerror or cause}")
    return ConnectError(f"cannot connect to {url}: {cause or error!r}")


def _tls_error(error: BaseException, url: str) -> TLSError:
    """A failed TLS handshake (trio wraps the ``ssl`` error) as the client's own error."""
    cause = error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = cause.verify_message or cause.reason or str(cause)
        return CertificateError(f"cannot verify the TLS certificate of {url}: {why}")
    if isinstance(cause, ssl.SSLError):
        why = cause.reason or str(cause)
        if why == "WRONG_VERSION_NUMBER":
            why = "the server does not speak TLS on this port (ws:// instead of wss://?)"
        return TLSError(f"TLS handshake with {url} failed: {why}")
    return TLSError(f"TLS handshake with {url} failed: the connection was closed")


def _handshake_headers(
    origin: str | None, headers: Iterable[tuple[str, str]]
) -> list[tuple[bytes, bytes]]:
    """The extra request headers, checked: no handshake header, no line breaks."""
    extra = [(b"origin", origin.encode())] if origin is not None else []
    for name, value in headers:
        lowered = name.strip().lower()
        if lowered in HANDSHAKE_HEADERS or lowered.startswith("sec-websocket-"):
            raise ValueError(f"the {name} header is written by the handshake itself")
        if any(char in name + value for char in "\r\n\0") or not name.strip() or ":" in name:
            raise ValueError(f"not a valid header: {name!r}: {value!r}")
        extra.append((name.strip().encode("latin-1"), value.strip().encode("latin-1")))
    return extra


def _refused(error: BaseException | None) -> bool:
    """Whether every address refused (trio chains the per-address errors as the cause)."""
    if isinstance(error, ConnectionRefusedError):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_refused(inner) for inner in error.exceptions)
    if isinstance(error, OSError) and error.__cause__ is not None:
        return _refused(error.__cause__)
    return False


class Client:
    """A connection to a trio-broadcast server that survives drops. Make one with
    :func:`open_client`, which takes the same arguments; iterate it for events, :meth:`publish`
    to broadcast.

    Args:
        url: ``ws://host:port/ws/events`` (``http://host:port`` works too: the path defaults to
            ``/ws/events``).
        batch: ask for batched frames (several events per frame under load).
        since: resume after this seq (with ``epoch``; without it, the server's current epoch).
        epoch: the epoch ``since`` belongs to.
        reconnect: reconnect after a drop; if False, a drop ends iteration with
            :class:`ConnectionLostError`.
        policy: backoff between attempts (default :class:`ReconnectPolicy`).
        publish_wait: seconds a publish waits for a connection; 0 raises at once; None forever.
        receive: queue events for iteration; False for publish-only clients.
        event_buffer: events queued before the client stops reading (back-pressure).
        connect_timeout: seconds for the TCP and WebSocket handshakes.
        close_timeout: seconds for the WebSocket closing handshake.
        send_timeout: seconds a publish frame may take to go out before the connection is
            considered stuck and dropped.
        keepalive: seconds between the client's pings; a ping unanswered for as long drops
            the connection (a silent peer is otherwise never noticed). None: no pings.
        origin: an ``Origin`` header to send (browsers send one; scripts normally do not).
        headers: more request headers for the handshake, e.g.
            ``[("Authorization", "Bearer ...")]`` for a proxy that checks tokens (not the
            handshake's own headers: ``ValueError``).
        ssl_context: for ``wss://``: whom to trust, client certificates
            (``ssl.create_default_context(cafile=...)``); default: the system's trusted CAs.
        max_frame_bytes: the largest server frame accepted.
        rng: random source for the backoff jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        url: str,
        *,
        batch: bool = True,
        since: int | None = None,
        epoch: str | None = None,
        reconnect: bool = True,
        policy: ReconnectPolicy | None = None,
        publish_wait: float | None = 10.0,
        receive: bool = True,
        event_buffer: int = 1024,
        connect_timeout: float = 10.0,
        close_timeout: float = 2.0,
        send_timeout: float = 10.0,
        keepalive: float | None = 30.0,
        origin: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        ssl_context: ssl.SSLContext | None = None,
        max_frame_bytes: int = 64 * MIB,
        rng: random.Random | None = None,
    ) -> None:
        self.url = websocket_url(url)  # the endpoint, normalised (raises InvalidURLError)
        self._state = ClientState(batch=batch, since=since, epoch=epoch)
        self._backoff = Backoff(policy or ReconnectPolicy(), rng)
        self._reconnect = reconnect  # reconnect after a drop (the first connect never retries)
        self._publish_wait = math.inf if publish_wait is None else publish_wait  # seconds
        self._receive = receive  # queue events for iteration
        self._connect_timeout = connect_timeout  # seconds for TCP + WebSocket handshake
        self._close_timeout = close_timeout  # seconds for the closing handshake
        self._send_timeout = send_timeout  # seconds a publish frame may take to send
        self._keepalive = keepalive  # seconds between pings; None: no pings
        self._headers = _handshake_headers(origin, headers)  # sent with every handshake
        self._ssl_context = ssl_context  # for wss://; None: the system's trusted CAs
        self._max_frame_bytes = max_frame_bytes  # largest server frame accepted
        self._events_send, self._events_receive = trio.open_memory_channel[Event](event_buffer)
        self._conn: _Connection | None = None  # the current connection, if any
        self._open_connections: set[_Connection] = set()  # not yet closed, current or not
        self._ready_changed = trio.Event()  # set (and replaced) when readiness changes
        self._wakers: dict[str, trio.Event] = {}  # publish id -> wakes its publish() call
        self._host: trio.Nursery | None = None  # shielded: owns the connection tasks
        self._host_scope: trio.CancelScope | None = None  # cancels the host at close
        self._first_done = trio.Event()  # the first connection is ready, or failed for good
        self._failure: ClientError | None = None  # why the client stopped, for good
        self._closed = False  # the ``async with`` is exiting

    # -- public API ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is up and ready for publishes (resume finished)."""
        return self._conn is not None and self._state.ready

    @property
    def client_id(self) -> str | None:
        """This connection's id (others see it as ``sender``); ``None`` while disconnected."""
        welcome = self._state.welcome
        return welcome.client_id if welcome is not None else None

    @property
    def epoch(self) -> str | None:
        """The server history the resume position belongs to."""
        return self._state.epoch

    @property
    def last_seq(self) -> int | None:
        """The highest seq seen (message or ack): with :attr:`epoch`, where a resume starts."""
        return self._state.last_seq

    @property
    def limits(self) -> Limits | None:
        """The limits the server announced (on the last connection)."""
        return self._state.limits

    def statistics(self) -> ClientStatistics:
        """Counters since the client was opened (a frozen snapshot)."""
        return self._state.statistics()

    async def wait_connected(self) -> None:
        """Wait until a connection is ready. A checkpoint.

        Raises:
            ClientError: the client stopped for good, or was closed.
        """
        await trio.lowlevel.checkpoint()
        while not self.connected:
            self._raise_if_stopped()
            await self._ready_changed.wait()

    async def publish(self, message: str, *, id: str | None = None) -> Ack:
        """Broadcast ``message`` and return its ack. A checkpoint.

        While disconnected, waits up to ``publish_wait`` seconds for a connection.
        Cancelling it before the frame is sent sends nothing; after, the message may still be
        broadcast (its ack is then absorbed).

        Args:
            message: the text to broadcast.
            id: the publish id to send (at most 64 characters); one is generated if omitted.

        Raises:
            NotConnectedError: no connection within ``publish_wait``; nothing was sent.
            PublishRejectedError: the server refused it (``RateLimitedError`` for the rate).
            PublishOutcomeUnknownError: sent, then lost with the connection, and the resume
                could not tell whether it was broadcast.
            MessageTooLargeError: over the server's ``max_message_bytes``; nothing was sent.
            ClientError: the client was closed or stopped for good.
        """
        self._raise_if_stopped()
        entry = self._state.add_publish(message, id)
        deadline: float | None = None  # while waiting for a connection
        try:
            while True:
                if entry.status is PublishStatus.SETTLED:
                    if isinstance(entry.outcome, Ack):
                        return entry.outcome
                    assert entry.outcome is not None
                    raise entry.outcome
                self._raise_if_stopped()
                conn = self._conn
                if entry.status is PublishStatus.UNSENT and conn is not None and self.connected:
                    deadline = None
                    await self._send(conn, entry)
                    continue
                if entry.status is PublishStatus.IN_FLIGHT:
                    deadline = None
                elif deadline is None:
                    deadline = trio.current_time() + self._publish_wait
                elif trio.current_time() >= deadline:
                    if entry.status is PublishStatus.UNCERTAIN:
                        raise PublishOutcomeUnknownError(
                            f"sent, then the connection was lost; no reconnection within "
                            f"{self._publish_wait:g} s to learn whether it was broadcast"
                        )
                    raise NotConnectedError(
                        f"not connected to {self.url} (waited {self._publish_wait:g} s); "
                        "the message was not sent"
                    )
                waker = self._wakers[entry.id] = trio.Event()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await waker.wait()
        finally:
            self._wakers.pop(entry.id, None)
            if entry.status is not PublishStatus.SETTLED:
                self._state.discard(entry)

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        """The next event. A checkpoint.

        Raises:
            ClientError: the client stopped for good (e.g. :class:`ConnectionLostError` when
                ``reconnect=False``, or :class:`OriginRejectedError` on a reconnect).
        """
        if not self._receive:
            raise RuntimeError("this client was opened with receive=False: it has no events")
        try:
            return await self._events_receive.receive()
        except trio.EndOfChannel:
            if self._failure is not None:
                raise self._failure from None
            raise StopAsyncIteration from None
        except trio.ClosedResourceError:
            raise ClientClosedError("the client is closed") from None

    # -- internals -----------------------------------------------------------------------------

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _wake(self, publish_id: str) -> None:
        waker = self._wakers.get(publish_id)
        if waker is not None:
            waker.set()

    def _wake_all(self) -> None:
        for waker in self._wakers.values():
            waker.set()
        self._ready_changed.set()
        self._ready_changed = trio.Event()

    def _fail(self, error: ClientError) -> None:
        """Stop for good: iteration ends with ``error``, publishes raise it."""
        if self._failure is None:
            self._failure = error
        self._events_send.close()
        self._first_done.set()
        self._wake_all()

    async def _send(self, conn: _Connection, entry: PendingPublish) -> None:
        """Send a publish frame; shielded so that a cancelled publish never leaves half a frame
        on the socket. A send stuck longer than ``send_timeout`` ends the connection."""
        self._state.mark_sent(entry)  # before the await: the ack may be read before we resume
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._send_timeout
            # On a close the reader sees why; the entry is then settled by the resume.
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send_message(entry.frame)
        if scope.cancelled_caught:
            conn.close_code = 1001
            conn.close_requested.set()

    async def _emit(self, event: Event) -> None:
        if self._receive:
            with contextlib.suppress(trio.ClosedResourceError):  # closing: nobody reads it
                await self._events_send.send(event)

    async def _host_connections(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Own every connection task, shielded: outside cancellation must not tear a WebSocket
        down before its close frame is sent. :meth:`_shutdown` cancels this when done."""
        with trio.CancelScope(shield=True) as scope:
            self._host_scope = scope
            async with trio.open_nursery() as nursery:
                self._host = nursery
                task_status.started()
                await trio.sleep_forever()

    async def _connection(self, url: str, *, task_status: trio.TaskStatus[_Connection]) -> None:
        """Open one WebSocket and keep it until asked to close it.

        Until ``started`` this runs in the caller's cancel scope (the connect can be cancelled);
        after, in the shielded host, so that its close frame always gets out. The TCP stream is
        ours, and closed here whatever happens (trio-websocket leaves it open on a refusal).
        """
        stream = await self._open_stream(url)
        conn: _Connection | None = None
        failure: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(self._connect_timeout):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        urlsplit(url).netloc,
                        _resource(url),
                        extra_headers=self._headers,
                        message_queue_size=64,
                        max_message_size=self._max_frame_bytes,
                        receive_buffer_size=RECEIVE_BYTES,
                    )
                conn = _Connection(ws=ws, opened_at=trio.current_time())
                self._open_connections.add(conn)
                task_status.started(conn)
                if self._keepalive is not None:
                    nursery.start_soon(self._keep_alive, conn, self._keepalive)
                try:
                    await conn.close_requested.wait()
                    with trio.move_on_after(self._close_timeout):
                        await ws.aclose(conn.close_code)
                finally:
                    conn.finished.set()
                    self._open_connections.discard(conn)
                nursery.cancel_scope.cancel()  # the reader, if the peer never closed TCP
        except* (HandshakeError, ConnectionClosed, OSError, trio.BrokenResourceError) as group:
            failure = group.exceptions[0]
        except* trio.TooSlowError:
            failure = ConnectionTimeout()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        if conn is None and failure is not None:
            raise _connect_error(failure, self.url, self._connect_timeout) from failure
        # After start the connection is over either way; the reader has seen why.

    @staticmethod
    async def _keep_alive(conn: _Connection, interval: float) -> None:
        """Ping every ``interval`` seconds; a ping unanswered for as long means the peer (or
        the path to it) is gone without a word: drop the connection so that the client
        reconnects."""
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval) as waited:
                try:
                    await conn.ws.ping()
                except ConnectionClosed:
                    return
            if waited.cancelled_caught:
                conn.lost_reason = f"no answer to a ping within {interval:g} s"
                conn.close_code = 1001
                conn.close_requested.set()
                return

    async def _open_stream(self, url: str) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        """The TCP (or TLS) stream for ``url``.

        Raises:
            ConnectError: refused, unreachable, or no answer within ``connect_timeout``.
        """
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        try:
            with trio.fail_after(self._connect_timeout):
                if not secure:
                    return await trio.open_tcp_stream(host, port)
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=self._ssl_context, https_compatible=True
                )
                try:
                    await stream.do_handshake()  # here, so that its failure is told as such
                except trio.BrokenResourceError as error:
                    await trio.aclose_forcefully(stream)
                    raise _tls_error(error, self.url) from error
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                return stream
        except trio.TooSlowError:
            raise _connect_error(ConnectionTimeout(), self.url, self._connect_timeout) from None
        except OSError as error:
            raise _connect_error(error, self.url, self._connect_timeout) from error

    async def _run(self) -> None:
        """Connect, read, reconnect: the one task that reads from the server."""
        assert self._host is not None
        failures = 0  # consecutive failed connection attempts
        while not self._closed:
            url = self._state.connect_url(self.url)
            try:
                conn: _Connection = await self._host.start(self._connection, url)
            except ConnectError as error:
                failures += 1
                first = not self._first_done.is_set()
                permanent = isinstance(error, CertificateError) or (
                    isinstance(error, HandshakeRejectedError) and error.status < 500
                )
                if first or permanent or not self._reconnect or self._backoff.exhausted(failures):
                    self._fail(error)
                    return
                delay = self._backoff.next_delay()
                await self._emit(
                    ConnectFailed(error=str(error), attempt=failures, reconnect_in=delay)
                )
                await trio.sleep(delay)
                continue
            failures = 0
            self._conn = conn
            try:
                code, reason = await self._read(conn)
            finally:
                self._conn = None
                for output in self._state.connection_lost(conn.close_received):
                    if isinstance(output, Settled):
                        self._wake(output.id)
                conn.close_requested.set()
                self._wake_all()
            if code is None:  # ReconnectNow: dial again at once, with since/epoch
                continue
            if self._closed:
                return
            if not conn.welcomed and not self._first_done.is_set():
                self._fail(ConnectError(f"{self.url}: {reason} before the welcome frame"))
                return
            if not self._reconnect:
                await self._emit(Disconnected(code=code, reason=reason, reconnect_in=None))
                self._fail(ConnectionLostError(f"connection to {self.url} lost: {reason}", code))
                return
            self._backoff.connection_ended(trio.current_time() - conn.opened_at)
            delay = self._backoff.next_delay()
            await self._emit(Disconnected(code=code, reason=reason, reconnect_in=delay))
            await trio.sleep(delay)

    async def _read(self, conn: _Connection) -> tuple[int | None, str]:
        """Read frames until the connection ends; returns its close code and reason.

        ``(None, ...)`` means: reconnect at once (the epoch for ``since`` is now known).
        """
        state = self._state
        state.connection_opened()
        while True:
            try:
                text = await conn.ws.get_message()
            except ConnectionClosed as closed:
                if conn.lost_reason is not None:
                    return ABNORMAL_CLOSURE, conn.lost_reason
                code = closed.reason.code if closed.reason is not None else ABNORMAL_CLOSURE
                detail = closed.reason.reason if closed.reason is not None else None
                conn.close_received = None if code == ABNORMAL_CLOSURE else code
                reason = describe_close(conn.close_received)
                return code, f"{reason}: {detail}" if detail else reason
            if not isinstance(text, str):
                continue  # the protocol has no binary server frames
            try:
                outputs = state.receive(text)
            except ServerProtocolError as error:
                await self._handle(conn, error.outputs)
                conn.close_code = PROTOCOL_ERROR
                return PROTOCOL_ERROR, str(error)
            if not await self._handle(conn, outputs):
                return None, "resuming"

    async def _handle(self, conn: _Connection, outputs: list[Output]) -> bool:
        """Act on what the state machine said; False: reconnect at once."""
        for output in outputs:
            if isinstance(output, Settled):
                self._wake(output.id)
            elif isinstance(output, Ready):
                self._first_done.set()
                self._wake_all()
            elif isinstance(output, ReconnectNow):
                return False
            else:
                if isinstance(output, Connected):
                    conn.welcomed = True
                await self._emit(output)
        return True

    async def _first_connection(self) -> None:
        """Wait until the first connection is ready; raise why it failed otherwise."""
        await self._first_done.wait()
        if self._failure is not None:
            raise self._failure

    async def _shutdown(self) -> None:
        """Close the current WebSocket with 1000 and stop every task. Safe to call while
        cancelled: it is shielded, and bounded by ``close_timeout``."""
        self._closed = True
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._close_timeout + 0.5
            for conn in list(self._open_connections):
                conn.close_requested.set()
            for conn in list(self._open_connections):
                await conn.finished.wait()
        if self._host_scope is not None:
            self._host_scope.cancel()
        self._events_send.close()
        self._wake_all()


def _owning(factory: Callable[P, Client]) -> Callable[P, AbstractAsyncContextManager[Client]]:
    @asynccontextmanager
    async def open_client(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Client]:
        """Connect to a trio-broadcast server; the block owns the connection and its tasks.

        Enters once the first connection is ready (welcome received, resume done). Leaving the
        block, however it happens, closes the WebSocket with 1000 within ``close_timeout``
        seconds and ends every task the client started.

        Takes the same arguments as :class:`Client`.

        Raises:
            InvalidURLError: ``url`` is not usable.
            ValueError: a header in ``headers`` is not allowed.
            ConnectError: the first connection failed (refused, timeout, HTTP refusal such as
                :class:`OriginRejectedError`, :class:`CertificateError` for an untrusted
                certificate, or closed before the welcome).
        """
        client = factory(*args, **kwargs)
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(client._host_connections)
                nursery.start_soon(client._run)
                await client._first_connection()
                yield client
            except BaseException as raised:  # noqa: BLE001 - re-raised below, outside the nursery
                error = raised
            finally:
                await client._shutdown()
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    return open_client


open_client = _owning(Client)
