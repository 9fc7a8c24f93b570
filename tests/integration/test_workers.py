"""``trio-broadcast serve --workers N``: worker processes on one port, one audience via Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from redis_server import RedisServer, open_redis_server
from support import connect, publish, read_until_closed, receive_type, server_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/bin/redis-server").exists(), reason="needs redis-server (system-deps)"
    ),
]


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with open_redis_server(tmp_path) as server:
        yield server


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux /proc)."""
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def test_several_workers_without_redis_are_refused_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_broadcast", "serve", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "workers=2 needs redis_url" in done.stderr


async def test_two_workers_share_one_audience_and_sigterm_closes_every_client_with_1001(
    redis: RedisServer,
) -> None:
    async with server_process("--workers", "2", "--redis-url", redis.url) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        clients = 12
        codes: list[int | None] = []
        received: list[str] = []
        connected, delivered = trio.Semaphore(0), trio.Semaphore(0)

        async def client() -> None:
            async with connect(server.ws_url) as ws:
                await receive_type(ws, "welcome")
                connected.release()
                received.append((await receive_type(ws, "message"))["message"])
                delivered.release()
                _, code = await read_until_closed(ws)
                codes.append(code)

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
            for _ in range(clients):
                await connected.acquire()
            async with connect(server.ws_url) as publisher:
                await receive_type(publisher, "welcome")
                await publish(publisher, "to every worker's clients")
                assert (await receive_type(publisher, "ack"))["seq"] == 1
            for _ in range(clients):  # whichever worker each client landed on
                await delivered.acquire()
            server.process.send_signal(signal.SIGTERM)
        assert received == ["to every worker's clients"] * clients
        assert codes == [1001] * clients
        assert await server.process.wait() == 0


async def test_a_worker_that_dies_stops_the_others_and_the_parent_exits_1(
    redis: RedisServer,
) -> None:
    async with server_process("--workers", "2", "--redis-url", redis.url) as server:
        first, second = children(server.process.pid)
        async with connect(server.ws_url) as ws:
            await receive_type(ws, "welcome")
            os.kill(first, signal.SIGKILL)
            assert await server.process.wait() == 1
        assert "exited with status -9; stopping the others" in server.log()
        with pytest.raises(ProcessLookupError):  # the other worker is gone too
            os.kill(second, 0)
