"""Behind Debian's nginx, configured as docs/deployment.md says: the WebSocket upgrade goes
through, the server logs the client's address from X-Forwarded-For (and only because the proxy
is trusted), and broadcasts reach clients on both sides of it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import structlog
import trio
from conftest import RunningServer
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


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("needs nginx (scripts/system-deps.sh installs it)")
    return found


def free_port() -> int:
    """A port nothing listens on now (nginx cannot be handed a socket; a clash is retried)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxLog:
    """nginx's error log on its stderr, read as it comes: ``ready`` is set once the workers
    start (the listening sockets are bound by then), ``ended`` at exit."""

    def __init__(self) -> None:
        self.text = ""  # everything logged so far
        self.ready = trio.Event()
        self.ended = trio.Event()

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        try:
            async for chunk in stream:
                self.text += bytes(chunk).decode(errors="replace")
                if "start worker process" in self.text:
                    self.ready.set()
        finally:
            self.ended.set()
            self.ready.set()


async def stop(process: trio.Process) -> None:
    """Stop nginx (fast shutdown: it closes every connection), even if the test is cancelled."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def run_nginx(upstream: int, directory: Path) -> AsyncIterator[int]:
    """nginx in the foreground, proxying 127.0.0.1:PORT to ``upstream``; stopped on exit."""
    binary = nginx_binary()
    for _attempt in range(3):
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(dir=directory, upstream=upstream, port=port, source=PROXY_SOURCE)
        )
        process = await trio.lowlevel.open_process(
            [binary, "-p", str(directory), "-e", "stderr", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        log = NginxLog()
        async with trio.open_nursery() as nursery:
            assert process.stderr is not None
            nursery.start_soon(log.read, process.stderr)  # ends when nginx has exited
            try:
                with trio.fail_after(10):
                    await log.ready.wait()
                if not log.ended.is_set():
                    yield port
                    return
            finally:
                await stop(process)
        if "Address already in use" not in log.text:
            raise AssertionError(f"nginx did not start:\n{log.text}")
    raise AssertionError("no free port for nginx after 3 attempts")


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
