"""``/ws/events`` as a plain ASGI WebSocket endpoint, served in front of the Quart app.

Quart wraps every frame in its own layer (a request context, an ``accept`` check, a signal, one
more channel hop per received frame); at tens of thousands of frames per second that layer was the
largest single cost of the server. This endpoint speaks ASGI directly: the handshake is checked
here (origin, query string), refusals are HTTP responses through the ``websocket.http.response``
extension, and the connection itself is :func:`.connection.run_connection` over
:class:`AsgiTransport`. Quart keeps every HTTP route.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import structlog
import trio

from ..errors import CloseCode, CloseConnection
from ._hypercorn import CLOSE_EVENT, DIRECT_SEND, DirectSender
from .connection import (
    CLOSE_TIMEOUT,
    ConnectParams,
    LatencyObserver,
    Session,
    TransportClosed,
    TransportFailed,
    Writer,
    await_close_reply,
    run_connection,
    subscribe,
)
from .handshake import Handshake, check
from .hub import Hub
from .proxies import TrustedProxies

log = structlog.get_logger("trio_broadcast.server.endpoint")

PATH = "/ws/events"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiTransport:
    """An accepted ASGI WebSocket as a :class:`.connection.Transport`.

    Writes frames as bytes through the server's ``DIRECT_SEND`` scope extension when it offers
    one and the connection can take them (see :mod:`._hypercorn`); otherwise ``raw`` is None
    and every frame is an ASGI ``websocket.send``.
    """

    def __init__(self, receive: Receive, send: Send, direct: DirectSender | None = None) -> None:
        self._receive = receive
        self._send = send
        self.raw = direct if direct is not None and direct.usable() else None

    async def receive(self) -> str | bytes | None:
        return _frame(await self._receive())

    async def send(self, frame: str) -> None:
        await self._send({"type": "websocket.send", "text": frame})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


def _frame(message: Message) -> str | bytes | None:
    """An ASGI receive event as a client frame (see :meth:`.connection.Transport.receive`).

    Raises:
        TransportClosed: the client is gone (``websocket.disconnect``).
        TransportFailed: what it sent cannot be taken (``CLOSE_EVENT``).
    """
    if message["type"] == "websocket.receive":
        text: str | None = message.get("text")
        return text if text is not None else message.get("bytes")
    if message["type"] == CLOSE_EVENT:
        raise TransportFailed(message["code"], message["reason"], wait_for_reply=message["wait"])
    # websocket.disconnect
    raise TransportClosed(message.get("code"), message.get("reason") or "")


async def serve_events(
    hub: Hub,
    scope: Message,
    receive: Receive,
    send: Send,
    *,
    allowed_origins: tuple[str, ...],
    public_hosts: tuple[str, ...] = (),
    trusted_proxies: TrustedProxies | None = None,
    observe_latency: LatencyObserver | None = None,
) -> None:
    """Run one ``/ws/events`` connection from its ASGI ``websocket`` scope to its end.

    Refuses the handshake with 400 (malformed: see :mod:`.handshake`, or a bad query string) or
    403 (origin not allowed); otherwise accepts it and serves the client until it leaves.
    A checkpoint; cancel-safe.
    """
    accepted = await _accept(
        hub,
        scope,
        receive,
        send,
        allowed_origins=allowed_origins,
        public_hosts=public_hosts,
        trusted_proxies=trusted_proxies,
    )
    if accepted is None:
        return
    params, peer = accepted
    transport = AsgiTransport(receive, send, scope.get("extensions", {}).get(DIRECT_SEND))
    if transport.raw is None:
        await run_connection(hub, transport, params, peer=peer, observe_latency=observe_latency)
    else:
        await _detach(hub, transport, transport.raw, receive, params, peer, observe_latency)


async def _detach(
    hub: Hub,
    transport: AsgiTransport,
    direct: DirectSender,
    receive: Receive,
    params: ConnectParams,
    peer: str,
    observe_latency: LatencyObserver | None,
) -> None:
    """Serve a connection Hypercorn can deliver to without a task of the app's (see
    ``DirectSender.detach``): subscribe, start the first writer, hand the connection to
    Hypercorn, and return. Events that came before the hand-over are taken here first."""
    hub.session_opened()
    try:
        subscription = subscribe(hub, transport, params, peer)
    except CloseConnection as refusal:
        hub.session_closed()
        await transport.close(refusal.close_code, refusal.reason)
        return
    connection = DetachedConnection(
        Session(hub, subscription.subscriber, peer, observe_latency), direct
    )
    handed_over = False
    try:
        # (The writer, not the connection, holds the transport: the stream holds the connection.)
        end = functools.partial(connection.closed_by_server, transport)
        writer = Writer(connection.session, transport, direct.spawn, end, _no_abort)
        connection.greeting = True
        try:
            await writer.greet(subscription)  # in this task: one task fewer to start per client
        finally:
            connection.greeting = False
        del subscription
        while not connection.session.finished:
            if direct.detach(connection):
                handed_over = True  # Hypercorn calls connection_lost at the end
                return
            await connection.deliver(await receive())
    finally:
        if not handed_over:
            connection.connection_lost()


def _no_abort() -> None:
    """A detached connection's writer that fails: ``DirectSender.spawn`` logs the error and
    closes the connection (the first, in the app's task: as any error escaping an app)."""


class DetachedConnection:
    """A connection after its app has returned: Hypercorn's read loop delivers its ASGI events
    here (``deliver``), a writer task runs beside it while something is queued, and Hypercorn
    calls ``connection_lost`` once every task of the connection has ended.

    No task of its own: an idle client is its socket, Hypercorn's read loop, the protocol
    objects and the subscriber (about 14 KB instead of 19; see docs/BENCHMARKS.md).
    """

    __slots__ = ("_direct", "_gone", "_reply_expected", "greeting", "session")

    def __init__(self, session: Session, direct: DirectSender) -> None:
        self.session = session
        self._direct = direct
        self.greeting = False  # the app's task is the writer now: nobody reads meanwhile
        self._reply_expected = True  # the client's frames can still be read (its close reply)
        self._gone: trio.Event | None = None  # set when the client has closed, if awaited

    async def deliver(self, message: Message) -> None:
        """One ASGI receive event: a frame to take, a failure to close for, or the end.

        Runs in Hypercorn's read loop: an error here is logged and closes this connection
        (1011), as one escaping an app's task would, rather than end the loop.
        """
        try:
            await self._deliver(message)
        except Exception:
            log.exception("connection_failed", client_id=self.session.subscriber.client_id)
            self.session.hub.disconnect(
                self.session.subscriber,
                CloseConnection("internal error", CloseCode.INTERNAL_ERROR),
            )

    async def _deliver(self, message: Message) -> None:
        session = self.session
        try:
            data = _frame(message)
        except TransportFailed as failure:
            if session.subscriber.closing is None:
                session.fail(failure)
            if not failure.wait_for_reply:
                self._reply_expected = False
                self._client_gone()
            return
        except TransportClosed as closed:
            session.client_closed = closed.code, closed.reason
            session.finish()
            self._client_gone()
            return
        if session.subscriber.closing is None:  # after a close, frames are discarded
            await session.take(data)

    async def closed_by_server(self, transport: AsgiTransport) -> None:
        """After the writer has sent our close frame: wait ``CLOSE_TIMEOUT`` at most for the
        client's close reply (closing the socket on unread frames would reset it, and a reset
        can destroy our close frame), then close the connection."""
        session = self.session
        if self.greeting:  # closed while greeting, in the app's task: it reads the reply too
            if session.client_closed is None:
                session.client_closed = await await_close_reply(transport)
        elif self._reply_expected and not session.finished:  # delivered by whoever reads
            gone = self._gone = trio.Event()
            with trio.move_on_after(CLOSE_TIMEOUT):
                await gone.wait()
        session.finish()
        await self._direct.finish()

    def connection_lost(self) -> None:
        self.session.finish()
        self.session.hub.session_closed()

    def _client_gone(self) -> None:
        if self._gone is not None:
            self._gone.set()


async def _accept(
    hub: Hub,
    scope: Message,
    receive: Receive,
    send: Send,
    *,
    allowed_origins: tuple[str, ...],
    public_hosts: tuple[str, ...],
    trusted_proxies: TrustedProxies | None,
) -> tuple[ConnectParams, str] | None:
    """Check the handshake and accept it, or refuse it (None). Its own frame, so that what the
    checks needed (every header, decoded) is not kept for the connection's lifetime."""
    connect = await receive()
    if connect["type"] != "websocket.connect":  # the client left during the handshake
        return None
    handshake = Handshake.from_scope(scope["headers"], scope.get("http_version", "1.1"))
    peer = _peer(scope, handshake, trusted_proxies)
    refusal = check(handshake, allowed_origins=allowed_origins, public_hosts=public_hosts)
    if refusal is not None:
        hub.count_eviction(refusal.reason)
        log.warning(
            "refused",
            peer=peer,
            status=refusal.status,
            reason=refusal.detail,
            origin=handshake.header("origin"),
            host=handshake.header("host"),
        )
        await _refuse(scope, send, refusal.status, refusal.detail)
        return None
    query = dict(reversed(parse_qsl(scope.get("query_string", b"").decode("latin-1"))))
    try:
        params = ConnectParams.from_query(query)
    except ValueError as error:
        await _refuse(scope, send, 400, str(error))
        return None
    await send({"type": "websocket.accept"})
    return params, peer


async def _refuse(scope: Message, send: Send, status: int, detail: str) -> None:
    """Answer the handshake with an HTTP error instead of upgrading."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": detail})  # plain 403
        return
    body = detail.encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


def _peer(scope: Message, handshake: Handshake, proxies: TrustedProxies | None) -> str:
    """The client's address for logs: ``host:port`` of the TCP peer or, when that is a trusted
    proxy that names the client, the address it gives (without a port)."""
    client = scope.get("client")
    if not client:
        return ""
    if proxies:
        forwarded = proxies.client(client[0], handshake.headers)
        if forwarded is not None:
            return forwarded
    return f"{client[0]}:{client[1]}"
