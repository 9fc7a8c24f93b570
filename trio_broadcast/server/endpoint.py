"""``/ws/events`` as a plain ASGI WebSocket endpoint, served in front of the Quart app.

Quart wraps every frame in its own layer (a request context, an ``accept`` check, a signal, one
more channel hop per received frame); at tens of thousands of frames per second that layer was the
largest single cost of the server. This endpoint speaks ASGI directly: the handshake is checked
here (origin, query string), refusals are HTTP responses through the ``websocket.http.response``
extension, and the connection itself is :func:`.connection.run_connection` over
:class:`AsgiTransport`. Quart keeps every HTTP route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import structlog

from ._hypercorn import CLOSE_EVENT, DIRECT_SEND, DirectSender
from .connection import (
    ConnectParams,
    LatencyObserver,
    TransportClosed,
    TransportFailed,
    run_connection,
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
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text: str | None = message.get("text")
            return text if text is not None else message.get("bytes")
        if message["type"] == CLOSE_EVENT:
            raise TransportFailed(
                message["code"], message["reason"], wait_for_reply=message["wait"]
            )
        # websocket.disconnect
        raise TransportClosed(message.get("code"), message.get("reason") or "")

    async def send(self, frame: str) -> None:
        await self._send({"type": "websocket.send", "text": frame})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


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
    await run_connection(
        hub,
        AsgiTransport(receive, send, scope.get("extensions", {}).get(DIRECT_SEND)),
        params,
        peer=peer,
        observe_latency=observe_latency,
    )


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
