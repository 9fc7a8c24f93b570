"""Test clients: trio-websocket helpers and a raw-socket client for fault injection."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any, TypeVar, cast

import trio
from protocol_schema import check_server_frame
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url
from wsproto.frame_protocol import FrameProtocol, Opcode

from trio_broadcast.client.session import Client, Event
from trio_broadcast.server.hub import Subscriber
from trio_broadcast.server.outbox import Bundle
from trio_broadcast.wire.frames import frame_header, upgrade_request

JSON = dict[str, Any]


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[WebSocketConnection]:
    """``open_websocket_url`` that also closes the TCP stream when the server closed first.

    trio-websocket 0.12 leaves the socket to the garbage collector when the server's close frame
    arrives and the TCP connection is gone before the client could answer it.
    """
    async with open_websocket_url(url, **kwargs) as ws:
        try:
            yield ws
        finally:
            await ws._stream.aclose()  # idempotent


async def receive_json(ws: WebSocketConnection) -> JSON:
    """The next frame, decoded; fails the test if it is not a JSON object the protocol's
    AsyncAPI document describes (docs/asyncapi.json)."""
    frame = await ws.get_message()
    data = json.loads(frame)
    assert isinstance(data, dict), frame
    check_server_frame(data)
    return cast(JSON, data)


async def receive_type(ws: WebSocketConnection, type_: str) -> JSON:
    """The next frame, which must be of ``type_``."""
    data = await receive_json(ws)
    assert data["type"] == type_, data
    return data


async def publish(ws: WebSocketConnection, message: str, **extra: Any) -> None:
    await ws.send_message(json.dumps({"message": message, **extra}))


def unbatch(frame: JSON) -> list[JSON]:
    """The events of a frame: a batch's events, or the frame itself."""
    if frame["type"] == "batch":
        return cast(list[JSON], frame["events"])
    return [frame]


async def handshake_status(host: str, port: int, target: str, headers: str = "") -> int:
    """Send a WebSocket upgrade request for ``target``; the HTTP status of the answer."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(1024)
            assert chunk, "connection closed before a status line"
            head += chunk
    return int(head.split(b" ", 2)[1])


class RawClient:
    """A WebSocket client on a bare socket with a tiny receive buffer, read only on demand.

    It lets a test stall reading (the server's sends back up into a zero TCP window), reset the
    connection abruptly, and still parse whatever the server sent, close frame included.
    """

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock  # the connected socket
        self.frames = FrameProtocol(client=True, extensions=[])  # server frame parser
        self.messages: list[str] = []  # text messages received so far
        self._partial = ""  # a text message still arriving in fragments
        self.close_code: int | None = None  # the server's close code, once seen
        self.pings = 0  # pings received (never answered)

    @classmethod
    async def connect(cls, host: str, port: int, query: str = "", rcvbuf: int = 4096) -> RawClient:
        """Connect and complete the handshake; nothing after the 101 response is read."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect((host, port))
        await sock.send(upgrade_request(f"{host}:{port}", f"/ws/events{query}"))
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: leave frames on the socket
            byte = await sock.recv(1)
            if not byte:
                raise ConnectionError("closed during handshake")
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock)

    async def read_until_closed(self) -> int | None:
        """Read and parse until the server closes; its close code, or None if there was none."""
        try:
            while self.close_code is None and await self.read_some():
                pass
        except ConnectionResetError:
            pass
        return self.close_code

    async def read_messages(self, count: int) -> list[str]:
        """Read and parse until ``count`` text messages have arrived in all; all of them."""
        while len(self.messages) < count:
            if not await self.read_some():
                raise ConnectionError(f"closed after {len(self.messages)} of {count} messages")
        return self.messages

    async def read_some(self, size: int = 65536) -> bool:
        """Receive once and parse what came (a malformed frame raises); False at EOF."""
        data = await self.sock.recv(size)
        if not data:
            return False
        self.frames.receive_bytes(data)
        for frame in self.frames.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION):
                self._partial += str(frame.payload)
                if frame.message_finished:
                    check_server_frame(json.loads(self._partial))  # docs/asyncapi.json
                    self.messages.append(self._partial)
                    self._partial = ""
            elif frame.opcode is Opcode.PING:
                self.pings += 1
            elif frame.opcode is Opcode.CLOSE:
                code, _reason = cast(tuple[int, str], frame.payload)
                self.close_code = int(code)
        return True

    async def send_text(self, text: str) -> None:
        """Send one (masked) text frame."""
        await self.sock.send(self.frames.send_data(text, fin=True))

    async def wait_for_eof(self) -> None:
        """Answer the server's close frame if one came, then read until TCP is closed or reset."""
        try:
            if self.close_code is not None:
                await self.sock.send(self.frames.close(self.close_code))
            while await self.sock.recv(65536):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass

    def reset(self) -> None:
        """Abort the connection: with SO_LINGER 0, close() sends a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


async def read_until_closed(ws: WebSocketConnection) -> tuple[list[JSON], int | None]:
    """Every frame until the server closes, and its close code."""
    frames: list[JSON] = []
    while True:
        try:
            frames.append(await receive_json(ws))
        except ConnectionClosed as closed:
            return frames, close_code(closed)


def close_code(closed: ConnectionClosed) -> int | None:
    """The close code a ``ConnectionClosed`` carries."""
    return closed.reason.code if closed.reason is not None else None


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame with any opcode and reserved bits (for malformed-frame tests)."""
    mask = os.urandom(4)
    head = bytearray(frame_header(len(payload), opcode=opcode, fin=fin, mask=mask))
    head[0] |= rsv << 4
    return bytes(head) + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class ServerProcess:
    """``trio-broadcast serve`` in a process of its own (its memory is its own to measure)."""

    def __init__(self, process: trio.Process, url: str, log: IO[bytes]) -> None:
        self.process = process
        self.url = url  # http://127.0.0.1:PORT
        self.ws_url = url.replace("http://", "ws://", 1) + "/ws/events"
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self._log = log  # the process's stderr

    def rss(self) -> int:
        """Resident memory in bytes (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        """Everything it logged so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


@asynccontextmanager
async def server_process(*args: str, log_level: str = "info") -> AsyncIterator[ServerProcess]:
    """Start ``python -m trio_broadcast serve --port 0 ARGS``; kill it on exit."""
    env = {**os.environ, "TRIO_BROADCAST_LOG_LEVEL": log_level}
    with tempfile.TemporaryFile() as log:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "trio_broadcast", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, "server exited before listening"
                line += chunk
            url = line.decode().strip().rsplit(" ", 1)[-1]
            yield ServerProcess(process, url, log)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


E = TypeVar("E", bound=Event)


async def next_of(client: Client, kind: type[E], seen: list[Event] | None = None) -> E:
    """The client library's next event of ``kind``; the ones skipped on the way are appended
    to ``seen``."""
    async for event in client:
        if isinstance(event, kind):
            return event
        if seen is not None:
            seen.append(event)
    raise AssertionError(f"the client stopped before a {kind.__name__}")


async def take_bundles(subscriber: Subscriber) -> list[Bundle]:
    """Wait for what the hub queues for ``subscriber`` and take all of it, the way its
    connection's writer does.

    Raises:
        trio.EndOfChannel: the outbox is closed and empty.
    """
    outbox = subscriber.outbox
    while outbox.empty:
        if outbox.closed:
            raise trio.EndOfChannel
        await outbox.wait()
    return outbox.take_nowait()


def running_tasks() -> list[trio.lowlevel.Task]:
    """Every task of this trio run, the root task included."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks = [root]
    for task in tasks:  # grows as it goes: breadth first
        tasks.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return tasks
