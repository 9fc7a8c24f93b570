"""Shared fixtures: a real server on 127.0.0.1:0, started through the project's own ``serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from trio_broadcast import ServerInfo, Settings, create_app, serve
from trio_broadcast.app import BroadcastApp


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


ServerFactory = Callable[..., Any]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A server with default settings (no pings, so tests control all traffic)."""
    async with run_server() as running:
        yield running


@pytest.fixture
def server_factory() -> Callable[..., Any]:
    """``async with server_factory(outbox_messages=4) as server:`` for custom settings."""
    return partial(run_server)
