"""A real nginx for the proxy tests: Debian's, in the foreground on a free port, with a
configuration the test writes; its error log read from stderr; stopped on exit."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio


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
async def open_nginx(
    configure: Callable[[int], str], directory: Path, *, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[int]:
    """nginx running ``configure(port)`` (written to ``directory``/nginx.conf), listening on
    127.0.0.1:``port``; yields the port, stops nginx on exit."""
    binary = nginx_binary()
    for _attempt in range(3):
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(configure(port))
        process = await trio.lowlevel.open_process(
            [binary, "-p", str(directory), "-e", "stderr", "-c", str(conf), *extra_args],
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
