"""Hostile clients: frames declared huge, malformed frames, data sent after the server's close.

Whatever a client sends, the server answers with a close frame that says why, keeps nothing it
was sent after that, lets go of the TCP connection, and every other client carries on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
import structlog
import trio
from conftest import RunningServer
from support import RawClient, client_frame, connect, publish, receive_type, server_process

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
CHUNK = b"x" * 65536
STREAMED = 1 << 36  # bytes a flooding client would push into its huge frame, if let
RSS_BOUND = 48 * 1024 * 1024  # the server may grow by this much while it is flooded


def disconnected_line(log: str, marker: str) -> set[str]:
    """The by/code/reason fields of the ``disconnected`` log line that holds ``marker``."""
    line = next(line for line in log.splitlines() if "disconnected" in line and marker in line)
    return {field for field in line.split() if field.startswith(("by=", "code="))} | {
        "reason=" + line.split("reason=", 1)[1]
    }


async def flood_until_dropped(client: RawClient, limit: int) -> int:
    """Send CHUNKs until the server drops the connection or ``limit`` bytes went; bytes sent."""
    sent = 0
    try:
        while sent < limit:
            sent += await client.sock.send(CHUNK)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


@pytest.mark.slow
async def test_a_frame_declared_huge_gets_1009_and_nothing_it_streams_is_kept() -> None:
    async with server_process("--max-message-bytes", "65536") as server:
        async with connect(server.ws_url) as other:
            await receive_type(other, "welcome")
            rss_before = server.rss()
            hostile = await RawClient.connect(server.host, server.port, rcvbuf=65536)
            # A text frame header declaring 2^40 bytes, then data as fast as the server reads.
            mask = b"\x00\x00\x00\x00"
            await hostile.sock.send(struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 40) + mask)
            async with trio.open_nursery() as nursery:
                codes: list[int | None] = []

                async def read() -> None:
                    codes.append(await hostile.read_until_closed())

                nursery.start_soon(read)
                with trio.fail_after(30):  # the server lets go within its close timeout
                    sent = await flood_until_dropped(hostile, STREAMED)
            hostile.close()
            grown = server.rss() - rss_before
            assert codes == [1009]
            assert sent < STREAMED, "the server kept reading for as long as the client sent"
            assert grown < RSS_BOUND, f"server grew by {grown:,} bytes after {sent:,} sent"
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.get("/health")).json()["connections"] == 1
            await publish(other, "still here")
            assert (await receive_type(other, "ack"))["seq"] == 1
        assert disconnected_line(server.log(), "code=1009") == {
            "by=server",
            "code=1009",
            "reason='message too big'",
        }


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(client_frame(TEXT, b'{"message": "\xff\xfe"}'), 1007, id="invalid-utf8"),
        pytest.param(client_frame(TEXT, b"{}", rsv=0b100), 1002, id="reserved-bit"),
        pytest.param(client_frame(0x3, b"x"), 1002, id="unknown-opcode"),
        pytest.param(b"\x81\x02{}", 1002, id="unmasked"),
        pytest.param(client_frame(PING, b"p" * 126), 1002, id="control-over-125"),
        pytest.param(client_frame(PING, b"p", fin=False), 1002, id="fragmented-control"),
        *(
            pytest.param(client_frame(CLOSE, struct.pack("!H", bad)), 1002, id=f"close-{bad}")
            for bad in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)
        ),
    ],
)
async def test_a_protocol_error_gets_a_close_frame_then_tcp_closes(
    server: RunningServer, frame: bytes, code: int
) -> None:
    async with connect(server.ws_url) as other:
        await receive_type(other, "welcome")
        hostile = await RawClient.connect(server.info.host, server.info.port)
        await hostile.read_messages(1)  # the welcome
        await hostile.sock.send(frame)
        assert await hostile.read_until_closed() == code
        await hostile.wait_for_eof()
        hostile.close()
        await server.wait_for_sessions(1)
        assert server.app.hub.statistics().evictions == {
            {1002: "protocol_error", 1007: "invalid_payload"}[code]: 1
        }
        await publish(other, "still here")
        assert (await receive_type(other, "ack"))["seq"] == 1


async def test_a_fragmented_message_over_the_limit_gets_1009_and_the_rest_is_dropped(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(max_message_bytes=1000) as server:
        hostile = await RawClient.connect(server.info.host, server.info.port)
        await hostile.read_messages(1)
        await hostile.sock.send(client_frame(TEXT, b"x" * 800, fin=False))
        await hostile.sock.send(client_frame(0x0, b"x" * 800, fin=False))  # over: 1009
        await hostile.sock.send(client_frame(0x0, b"x" * 800, fin=True))  # discarded
        assert await hostile.read_until_closed() == 1009
        await hostile.wait_for_eof()  # answers the close; the server lets go
        hostile.close()
        await server.wait_for_sessions(0)
        assert server.app.hub.statistics().evictions == {"message_too_big": 1}


async def test_a_client_close_is_logged_with_its_own_code_and_reason(
    server: RunningServer,
) -> None:
    with structlog.testing.capture_logs() as logs:
        hostile = await RawClient.connect(server.info.host, server.info.port)
        await hostile.read_messages(1)
        await hostile.sock.send(client_frame(CLOSE, struct.pack("!H", 4321) + b"bye now"))
        assert await hostile.read_until_closed() == 4321  # the server echoes it
        hostile.close()
        await server.wait_for_sessions(0)
    (line,) = (entry for entry in logs if entry["event"] == "disconnected")
    assert (line["by"], line["code"], line["reason"]) == ("client", 4321, "bye now")


async def test_a_client_that_connects_and_says_nothing_is_dropped(server: RunningServer) -> None:
    # Hypercorn's keep-alive timeout (5 s) guards a connection until its first request; the
    # read loop starts that timer only once it has to wait for data (_hypercorn.py S6).
    silent = trio.socket.socket()
    await silent.connect((server.info.host, server.info.port))
    with trio.fail_after(15):
        assert await silent.recv(100) == b""  # closed by the server, nothing sent
    silent.close()
    async with connect(server.ws_url) as ws:  # and the server serves on
        await receive_type(ws, "welcome")
