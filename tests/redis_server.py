"""A real ``redis-server`` for the backplane tests: a free port, a temporary folder, no
persistence unless asked for; started, killed and started again on demand."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1:``port`` with its files in ``folder``."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.folder = folder  # its working directory (the AOF, when persistent)
        self.port = free_port()
        self.persistent = persistent  # appendonly, fsync before every reply
        self.process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    async def start(self) -> None:
        """Start it and wait until it says it accepts connections."""
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        command = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            *(persistence if self.persistent else ["--appendonly", "no"]),
        ]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.process = process
        assert process.stdout is not None
        seen = b""
        while READY not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"redis-server exited: {seen.decode(errors='replace')}"
            seen = seen[-len(READY) :] + chunk if len(seen) > 4096 else seen + chunk

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered (like a network partition)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers what it was sent meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGKILL)  # a stopped process dies of it too
        await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()
        self.process = None


@asynccontextmanager
async def open_redis_server(
    folder: Path, *, persistent: bool = False
) -> AsyncIterator[RedisServer]:
    """A started redis-server; killed on exit."""
    server = RedisServer(folder, persistent=persistent)
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            with trio.CancelScope(shield=True):
                await server.kill()
