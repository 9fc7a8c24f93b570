"""permessage-deflate: off unless asked for; when on, a message inflates only up to the limit."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import trio
from conftest import RunningServer
from support import connect, receive_type
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
E = TypeVar("E", bound=Event)
BOMB = 20 * 1024 * 1024  # characters in a message that deflates to ~20 KB


class DeflateClient:
    """A wsproto client that offers permessage-deflate."""

    def __init__(self, sock: trio.socket.SocketType, ws: WSConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.extensions: list[str] = []  # what the server accepted

    @classmethod
    async def connect(cls, server: RunningServer) -> DeflateClient:
        sock = trio.socket.socket()
        await sock.connect((server.info.host, server.info.port))
        client = cls(sock, WSConnection(ConnectionType.CLIENT))
        host = f"{server.info.host}:{server.info.port}"
        offer = Request(host=host, target="/ws/events", extensions=[PerMessageDeflate()])
        await sock.send(client.ws.send(offer))
        accepted = await client.next(AcceptConnection)
        client.extensions = [extension.name for extension in accepted.extensions]
        return client

    async def next(self, kind: type[E]) -> E:
        """The next event of ``kind`` (others are skipped)."""
        while True:
            for event in self.ws.events():
                if isinstance(event, kind):
                    return event
            data = await self.sock.recv(65536)
            self.ws.receive_data(data or None)

    async def send_text(self, text: str) -> None:
        await self.send_raw(self.ws.send(TextMessage(data=text)))

    async def send_raw(self, frames: bytes) -> None:
        data = memoryview(frames)
        while data:
            data = data[await self.sock.send(data) :]


async def test_compression_is_not_negotiated_by_default(server: RunningServer) -> None:
    client = await DeflateClient.connect(server)
    assert client.extensions == []
    welcome = await client.next(TextMessage)
    assert json.loads(welcome.data)["type"] == "welcome"
    client.sock.close()


async def test_with_compression_on_messages_flow_compressed(server_factory: ServerFactory) -> None:
    async with server_factory(compression=True) as server, connect(server.ws_url) as listener:
        await receive_type(listener, "welcome")
        client = await DeflateClient.connect(server)
        assert client.extensions == ["permessage-deflate"]
        await client.next(TextMessage)  # the welcome, inflated by the client
        await client.send_text(json.dumps({"message": "squeezed " * 100}))
        assert (await receive_type(listener, "message"))["message"] == "squeezed " * 100
        client.sock.close()


async def test_a_compression_bomb_is_closed_with_1009_before_it_inflates(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(compression=True, max_message_bytes=65536) as server:
        client = await DeflateClient.connect(server)
        await client.next(TextMessage)
        deflated = client.ws.send(TextMessage(data=json.dumps({"message": "a" * BOMB})))
        assert len(deflated) < BOMB // 500  # ~20 KB on the wire
        tracemalloc.start()
        try:
            await client.send_raw(deflated)
            closed = await client.next(CloseConnection)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert closed.code == 1009
        # Everything allocated meanwhile, in this process (server included): not the 20 MiB.
        assert peak < 2 * 1024 * 1024, f"peak {peak:,} bytes"
        client.sock.close()
        await server.wait_for_sessions(0)
        assert server.app.hub.statistics().evictions == {"message_too_big": 1}
