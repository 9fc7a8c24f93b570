"""Behind Debian's nginx, configured as docs/deployment.md says: the WebSocket upgrade goes
through, the server logs the client's address from X-Forwarded-For (and only because the proxy
is trusted), and broadcasts reach clients on both sides of it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import structlog
import trio
from conftest import RunningServer
from nginx_server import open_nginx
from support import connect, publish, receive_type

PROXY_SOURCE = "127.0.0.2"  # nginx connects to the server from here (`proxy_bind`)

# The `http` block of docs/deployment.md, with the test's own paths and ports.
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream trio_broadcast {{
        server 127.0.0.1:{upstream};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://trio_broadcast;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 75s;
            proxy_buffering off;
            proxy_bind {source};
        }}
    }}
}}
"""


def run_nginx(upstream: int, directory: Path) -> AbstractAsyncContextManager[int]:
    """nginx in the foreground, proxying 127.0.0.1:PORT to ``upstream``; stopped on exit."""

    def configure(port: int) -> str:
        return NGINX_CONF.format(dir=directory, upstream=upstream, port=port, source=PROXY_SOURCE)

    return open_nginx(configure, directory)


async def test_websocket_through_nginx_with_the_forwarded_address(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]], tmp_path: Path
) -> None:
    async with (
        server_factory(trusted_proxies=(PROXY_SOURCE,)) as server,
        run_nginx(server.info.port, tmp_path) as proxy_port,
    ):
        proxied = f"ws://127.0.0.1:{proxy_port}/ws/events"
        spoofed = [(b"X-Forwarded-For", b"6.6.6.6")]  # a client's own claim: ignored
        with structlog.testing.capture_logs() as logs:
            async with (
                connect(proxied, extra_headers=spoofed) as behind,
                connect(server.ws_url, extra_headers=spoofed) as direct,
            ):
                await receive_type(behind, "welcome")
                await receive_type(direct, "welcome")
                await publish(behind, "through nginx")
                assert (await receive_type(direct, "message"))["message"] == "through nginx"
                await publish(direct, "back through nginx")
                assert (await receive_type(behind, "ack"))["seq"] == 1
                assert (await receive_type(behind, "message"))["message"] == "back through nginx"
        peers = [entry["peer"] for entry in logs if entry["event"] == "connected"]
        # Through the trusted proxy: the address nginx saw, without a port. Direct: the TCP
        # peer with its port, X-Forwarded-For ignored.
        assert sorted(peers, key=len) == ["127.0.0.1", peers[1]]
        assert peers[1].startswith("127.0.0.1:")
        assert "6.6.6.6" not in str(logs)


async def test_http_routes_through_nginx(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]], tmp_path: Path
) -> None:
    async with (
        server_factory() as server,
        run_nginx(server.info.port, tmp_path) as proxy_port,
    ):
        stream = await trio.open_tcp_stream("127.0.0.1", proxy_port)
        async with stream:
            await stream.send_all(
                f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{proxy_port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            response = b""
            async for chunk in stream:
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response
        assert b'"status":"healthy"' in response.replace(b" ", b"")


async def test_browser_origins_through_nginx(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]], tmp_path: Path
) -> None:
    """nginx passes the browser's Host, so the page's own origin is recognised behind it: on an
    address always, on a name when it is one of the server's public hosts."""
    async with (
        server_factory(public_hosts=("chat.example",)) as server,
        run_nginx(server.info.port, tmp_path) as proxy_port,
    ):
        own = f"127.0.0.1:{proxy_port}"
        async with connect(
            f"ws://{own}/ws/events", extra_headers=[(b"Origin", f"http://{own}".encode())]
        ) as ws:
            await receive_type(ws, "welcome")
        for name, status in (("chat.example", 101), ("evil.example", 403)):
            host = f"{name}:{proxy_port}"
            assert await upgrade_status(proxy_port, host, f"http://{host}") == status


async def upgrade_status(port: int, host: str, origin: str) -> int:
    """The status nginx relays for an upgrade request with these Host and Origin headers."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET /ws/events HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(1024)
            assert chunk, "closed before a status line"
            head += chunk
    return int(head.split(b" ", 2)[1])
