"""Connection churn: clients that come and go leave nothing behind, not even garbage to collect."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager

import httpx
import pytest
import trio
import trio.testing
from conftest import RunningServer
from support import RawClient, server_process

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]

CONCURRENT = 50  # clients connected at once during churn
RSS_BOUND = 24 * 1024 * 1024  # bytes the server may keep after 10,000 connections came and went


async def churn(host: str, port: int, count: int, *, reset: bool = False) -> None:
    """``count`` clients connect, read their welcome and leave, ``CONCURRENT`` at a time."""
    limiter = trio.CapacityLimiter(CONCURRENT)

    async def one() -> None:
        async with limiter:
            client = await RawClient.connect(host, port)
            await client.read_messages(1)
            if reset:
                client.reset()
            else:
                client.close()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


def live_objects() -> int:
    """Objects the collector tracks, but for the cancel scopes (and their heap entries) that
    trio keeps in its deadline heap until their deadline passes: a closing connection's
    close-reply wait leaves one there for its 2 s."""
    return sum(type(thing) not in (trio.CancelScope, tuple) for thing in gc.get_objects())


@contextmanager
def collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_connections_that_end_leave_no_cyclic_garbage(
    server: RunningServer, reset: bool
) -> None:
    count = 300
    await churn(server.info.host, server.info.port, 20)  # warm up: caches filled once
    await server.wait_for_sessions(0)
    with collector_paused():
        before = live_objects()
        await churn(server.info.host, server.info.port, count, reset=reset)
        await server.wait_for_sessions(0)
        await trio.testing.wait_all_tasks_blocked()
        unreachable = gc.collect()  # what only the cycle collector could have freed
        after = live_objects()
    # Hypercorn's per-connection objects used to form cycles: ~66 objects per connection.
    assert unreachable < count // 10, f"{unreachable} unreachable objects after {count}"
    assert after - before < count // 10, f"{after - before} more live objects after {count}"
    assert server.app.hub.statistics().connections_total == 20 + count


@pytest.mark.slow
async def test_ten_thousand_connections_come_and_go_and_memory_returns() -> None:
    async with server_process("--max-connections", "20000", log_level="warning") as server:
        await churn(server.host, server.port, 500)  # warm up: the first connections' caches
        start = server.rss()
        await churn(server.host, server.port, 10_000)
        async with httpx.AsyncClient(base_url=server.url) as http:
            status = (await http.get("/api/status")).json()
        grown = server.rss() - start
        assert status["connections"] == 0
        assert status["connections_total"] == 10_500
        assert grown < RSS_BOUND, f"RSS grew by {grown:,} bytes over 10,000 connections"
