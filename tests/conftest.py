"""Shared fixtures: a real server on 127.0.0.1:0, started through the project's own ``serve``."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from trio_broadcast import ServerInfo, Settings, create_app, serve
from trio_broadcast.server.app import BroadcastApp


class RunningServer:
    """A server running in the test's nursery."""

    def __init__(self, info: ServerInfo, app: BroadcastApp, stop: trio.Event) -> None:
        self.info = info  # where it listens
        self.app = app  # the app, for its hub and counters
        self._stop = stop  # set it to shut down gracefully
        self.stopped = trio.Event()  # set when serve() has returned

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def ws_url(self) -> str:
        return self.info.ws_url

    def shutdown(self) -> None:
        """Begin a graceful shutdown (clients get 1001); wait on ``stopped``."""
        self._stop.set()

    async def wait_for_connections(self, count: int) -> None:
        """Wait until the hub has exactly ``count`` subscribers."""
        hub = self.app.hub
        await hub.wait_until(lambda: hub.connection_count == count)

    async def wait_for_sessions(self, count: int) -> None:
        """Wait until exactly ``count`` connection tasks run (closing ones included)."""
        hub = self.app.hub
        await hub.wait_until(lambda: hub.open_sessions == count)


@asynccontextmanager
async def run_server(**overrides: Any) -> AsyncIterator[RunningServer]:
    """Start a real Hypercorn server on an ephemeral port; shut it down gracefully on exit."""
    defaults = {"port": 0, "ping_interval": None, "idle_timeout": None, "publish_rate": None}
    settings = Settings(**{**defaults, **overrides})
    app = create_app(settings)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[ServerInfo]) -> None:
            try:
                await serve(settings, app=app, shutdown_trigger=stop.wait, task_status=task_status)
            finally:
                stopped.set()

        info = await nursery.start(run)
        server = RunningServer(info, app, stop)
        server.stopped = stopped
        try:
            yield server
        finally:
            stop.set()


TEST_TIMEOUT = 60.0  # seconds; every async test runs under this deadline
SLOW_TEST_TIMEOUT = 180.0  # seconds, for tests marked slow


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test body under ``trio.fail_after``.

    pytest-trio runs fixtures in tasks of their own, so a deadline must wrap the test function
    itself to cancel a hung test.
    """
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        test = item.obj
        if not inspect.iscoroutinefunction(test):
            continue
        limit = SLOW_TEST_TIMEOUT if item.get_closest_marker("slow") else TEST_TIMEOUT
        item.obj = _with_deadline(test, limit)


def _with_deadline(test: Callable[..., Any], limit: float) -> Callable[..., Any]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        with trio.fail_after(limit):
            return await test(*args, **kwargs)

    return run


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A server with default settings (no pings, so tests control all traffic)."""
    async with run_server() as running:
        yield running


@pytest.fixture
def server_factory() -> Callable[..., Any]:
    """``async with server_factory(outbox_messages=4) as server:`` for custom settings."""
    return partial(run_server)


@pytest.fixture(autouse=True)
def _no_connection_ends_in_an_exception(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Hypercorn logs an exception that escapes the app ("Error in ASGI Framework") and carries
    on; no test may leave one behind."""
    yield
    errors = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.name.startswith("hypercorn") and record.levelno >= logging.ERROR
    ]
    assert errors == [], errors
