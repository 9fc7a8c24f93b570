"""An echo WebSocket endpoint on the server's own stack, for the Autobahn|Testsuite only.

It is the production app (``create_app``: Hypercorn's trio worker, every patch in
:mod:`trio_broadcast.server._hypercorn`, the endpoint's :class:`AsgiTransport`) with one more
path, ``/echo``, that sends every message back as it came (text or binary). Nothing in the
package serves it: it exists while a test or ``make conformance`` runs :func:`serve_echo_app`.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_broadcast.server.app import BroadcastApp, create_app
from trio_broadcast.server.config import Settings
from trio_broadcast.server.connection import CLOSE_TIMEOUT, TransportClosed, TransportFailed
from trio_broadcast.server.endpoint import AsgiTransport, Message, Receive, Send
from trio_broadcast.server.serve import ServerInfo, serve

ECHO_PATH = "/echo"
ECHO_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # Autobahn's largest messages (cases 9.*) are 16 MiB


class EchoApp(BroadcastApp):
    """The broadcast app with ``/echo`` served in front of it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == ECHO_PATH:
            await serve_echo(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def serve_echo(scope: Message, receive: Receive, send: Send) -> None:
    """Accept, then send back every message until the client closes or breaks the protocol.

    Closes the way ``/ws/events`` does: with the code the transport reports (1002, 1007,
    1009), then waits for the client's close reply when one can still come.
    """
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    transport = AsgiTransport(receive, send)
    while True:
        try:
            data = await transport.receive()
        except TransportClosed:
            return  # Hypercorn answers the client's close frame
        except TransportFailed as failure:
            await transport.close(failure.close.close_code, failure.close.reason)
            if failure.wait_for_reply:
                await _discard_until_close(transport)
            return
        if isinstance(data, str):
            await send({"type": "websocket.send", "text": data})
        elif data is not None:
            await send({"type": "websocket.send", "bytes": data})


async def _discard_until_close(transport: AsgiTransport) -> None:
    with trio.move_on_after(CLOSE_TIMEOUT):
        while True:
            try:
                await transport.receive()
            except (TransportClosed, TransportFailed):
                return


def create_echo_app(settings: Settings) -> EchoApp:
    app = create_app(settings)
    app.__class__ = EchoApp  # create_app builds the app; this adds one path in front of it
    return app  # type: ignore[return-value]


async def serve_echo_app(
    *,
    compression: bool = False,
    shutdown_trigger: Any = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve()`` the echo app on 127.0.0.1, an ephemeral port; like ``serve``, for ``start``.

    ``compression`` turns permessage-deflate on, as ``--compression`` does.
    """
    settings = Settings(
        port=0,
        max_message_bytes=ECHO_MAX_MESSAGE_BYTES,
        outbox_bytes=ECHO_MAX_MESSAGE_BYTES + 1024,
        ping_interval=None,
        idle_timeout=None,
        publish_rate=None,
        compression=compression,
    )
    await serve(
        settings,
        app=create_echo_app(settings),
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


__all__ = ["ECHO_PATH", "create_echo_app", "serve_echo", "serve_echo_app"]
