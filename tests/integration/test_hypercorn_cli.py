"""The app under the plain Hypercorn CLI, as docs/deployment.md describes it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from redis_server import open_redis_server
from support import connect, publish, read_until_closed, receive_type

HYPERCORN = [
    sys.executable,
    "-m",
    "hypercorn",
    "--config",
    "python:trio_broadcast.server.hypercorn_conf",
]


def _env(port: int) -> dict[str, str]:
    return {**os.environ, "TRIO_BROADCAST_PORT": str(port), "TRIO_BROADCAST_LOG_LEVEL": "info"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_one_hypercorn_worker_serves_websockets() -> None:
    port = _free_port()
    process = await trio.lowlevel.open_process(
        [*HYPERCORN, "trio_broadcast.server.asgi:app"],
        env=_env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        output = b""
        while b"Running on" not in output:
            chunk = await process.stderr.receive_some(4096)
            assert chunk, output.decode()
            output += chunk
        async with connect(f"ws://127.0.0.1:{port}/ws/events") as ws:
            assert (await receive_type(ws, "welcome"))["connections"] == 1
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.slow
async def test_a_second_hypercorn_worker_refuses_to_start() -> None:
    port = _free_port()
    result = await trio.run_process(
        [*HYPERCORN, "--workers", "2", "trio_broadcast.server.asgi:app"],
        env=_env(port),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 3
    assert b"run Hypercorn with one worker (-w 1)" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/redis-server").exists(), reason="needs redis-server")
async def test_two_hypercorn_workers_share_one_audience_through_redis(tmp_path: Path) -> None:
    async with open_redis_server(tmp_path) as redis:
        port = _free_port()  # after Redis took its own: not the same free port twice
        process = await trio.lowlevel.open_process(
            [*HYPERCORN, "--workers", "2", "trio_broadcast.server.asgi:app"],
            env={**_env(port), "TRIO_BROADCAST_REDIS_URL": redis.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            output = b""
            while output.count(b"Running on") < 2:  # one line per worker
                chunk = await process.stderr.receive_some(4096)
                assert chunk, output.decode()
                output += chunk
            url = f"ws://127.0.0.1:{port}/ws/events"
            async with connect(url) as listener, connect(url) as publisher:
                await receive_type(listener, "welcome")
                await receive_type(publisher, "welcome")
                await publish(publisher, "through redis")
                assert (await receive_type(listener, "message"))["message"] == "through redis"
                process.send_signal(signal.SIGTERM)
                _, code = await read_until_closed(listener)
            assert code == 1001
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
