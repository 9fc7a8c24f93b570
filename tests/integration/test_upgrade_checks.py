"""The upgrade request on a real server: malformed keys and repeated headers get 400, a
DNS-rebinding page gets 403, and the client's address behind a trusted proxy reaches the logs."""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import structlog
import trio
from conftest import RunningServer
from support import connect, receive_type

GOOD_KEY = base64.b64encode(bytes(range(16))).decode()


async def upgrade_status(server: RunningServer, *headers: str, host: str | None = None) -> int:
    """Send an upgrade request with exactly these extra header lines; the response's status."""
    port = server.info.port
    lines = [
        "GET /ws/events HTTP/1.1",
        f"Host: {host or f'{server.info.host}:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    stream = await trio.open_tcp_stream(server.info.host, port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(1024)
            assert chunk, "connection closed before a status line"
            head += chunk
    return int(head.split(b" ", 2)[1])


async def test_a_key_that_is_not_16_bytes_of_base64_gets_400(server: RunningServer) -> None:
    short = base64.b64encode(bytes(8)).decode()
    for key in ("not-a-key", short, GOOD_KEY.rstrip("=")):
        assert await upgrade_status(server, f"Sec-WebSocket-Key: {key}") == 400
    assert await upgrade_status(server, f"Sec-WebSocket-Key: {GOOD_KEY}") == 101
    assert server.app.hub.statistics().evictions == {"bad_handshake": 3}


async def test_two_origin_headers_get_400(server: RunningServer) -> None:
    own = f"http://{server.info.host}:{server.info.port}"
    key = f"Sec-WebSocket-Key: {GOOD_KEY}"
    evil = "Origin: https://evil.example"
    assert await upgrade_status(server, key, f"Origin: {own}", evil) == 400
    assert await upgrade_status(server, key, evil, f"Origin: {own}") == 400
    assert await upgrade_status(server, key, f"Origin: {own}") == 101


async def test_a_rebound_host_name_is_not_the_servers_own_origin(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    key = f"Sec-WebSocket-Key: {GOOD_KEY}"
    async with server_factory(public_hosts=("chat.example",)) as server:
        port = server.info.port
        evil = f"evil.example:{port}"
        assert await upgrade_status(server, key, f"Origin: http://{evil}", host=evil) == 403
        chat = f"chat.example:{port}"
        assert await upgrade_status(server, key, f"Origin: http://{chat}", host=chat) == 101
        assert server.app.hub.statistics().evictions == {"origin_rejected": 1}


async def test_forwarded_address_is_logged_only_from_a_trusted_proxy(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    forwarded = [(b"X-Forwarded-For", b"6.6.6.6, 203.0.113.7")]
    for trusted, expected in ((("127.0.0.0/8",), "203.0.113.7"), (("10.0.0.0/8",), None)):
        async with server_factory(trusted_proxies=trusted) as server:
            with structlog.testing.capture_logs() as logs:
                async with connect(server.ws_url, extra_headers=forwarded) as ws:
                    await receive_type(ws, "welcome")
            (line,) = (entry for entry in logs if entry["event"] == "connected")
            if expected is None:  # not from a trusted proxy: the TCP peer, port and all
                assert line["peer"].startswith("127.0.0.1:")
            else:
                assert line["peer"] == expected
