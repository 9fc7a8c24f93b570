"""The app for the plain Hypercorn CLI, configured from ``TRIO_BROADCAST_*`` variables::

    hypercorn --config python:trio_broadcast.server.hypercorn_conf trio_broadcast.server.asgi:app

What this module adds for a Hypercorn master and its worker processes:

- **One worker, unless Redis.** Without ``TRIO_BROADCAST_REDIS_URL`` one process holds the
  whole audience (the hub is in memory), so a second worker of the same master refuses to start:
  it prints one line and exits with status 3 while Hypercorn imports the app, and Hypercorn then
  stops every worker and exits non-zero, instead of silently splitting clients between hubs that
  cannot see each other. The lock the workers compete for is an abstract Unix socket (Linux): it
  leaves no file behind. With the Redis URL, workers share one audience and take no lock.
- **1001 on shutdown.** On SIGTERM or SIGINT the master sets an event that its workers poll; the
  app watches the same event and closes every client with 1001 at once, as
  ``trio-broadcast serve`` does, instead of leaving them to Hypercorn's ``graceful_timeout`` and
  a 1011. A SIGTERM to the worker itself (Hypercorn's master sends one to the other workers
  once the first has exited) starts the same shutdown. Under ``hypercorn -w 0`` (no master)
  there is no such event: see docs/deployment.md.
- **One-line start-up errors.** An invalid ``TRIO_BROADCAST_*`` value prints one line and exits
  with status 2, not a traceback.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from typing import NoReturn

import structlog
import trio

from ..errors import ConfigError
from ..logs import configure_logging
from ._hypercorn import SharedEvent, hypercorn_shutdown_event
from .app import BroadcastApp, create_app
from .config import Settings
from .serve import tune_gc

log = structlog.get_logger("trio_broadcast.server.asgi")

EXIT_INVALID_SETTING = 2  # as ``trio-broadcast serve``
EXIT_SECOND_WORKER = 3
SHUTDOWN_POLL_INTERVAL = 0.1  # seconds; Hypercorn's workers poll the event this often too


def _fail(message: str, status: int) -> NoReturn:
    """Stop the process while Hypercorn imports the app: one line, no traceback.

    Hypercorn imports the app before it starts trio, so the ``SystemExit`` leaves the process
    directly (a worker process exits with ``status``; its master then stops the others).
    """
    print(f"trio-broadcast: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def _take_worker_lock() -> socket.socket | None:
    """Bind a name shared by the workers of one Hypercorn master; exit if another worker has it.

    The name is an abstract Unix socket address (Linux): the kernel frees it when the process
    ends, however it ends, so nothing is left in the file system. Start-up only; never blocks.
    Returns the bound socket (keep it open for the life of the worker), or None when this
    process has no master (``hypercorn -w 0``, or a program embedding the app).
    """
    if multiprocessing.parent_process() is None:
        return None
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0trio-broadcast-workers-{os.getppid()}")
    except OSError:
        lock.close()
        _fail(
            "refusing to start a second Hypercorn worker: trio-broadcast keeps its audience in "
            "one process, and several workers would split clients into groups that never see "
            "each other's messages; run Hypercorn with one worker (-w 1)",
            EXIT_SECOND_WORKER,
        )
    return lock


async def close_clients_on_shutdown(app: BroadcastApp, event: SharedEvent) -> None:
    """Wait for the master's shutdown event, or a SIGTERM to this worker, then close every
    client with 1001.

    Hypercorn's master, once one of several workers has exited, sends SIGTERM to the others:
    caught here, it starts the same graceful shutdown (the event is set by then) instead of
    ending the worker with its clients' connections dropped. Runs in the app's nursery until
    then or until the app stops; cancelling it is safe.
    """
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def on_sigterm() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_sigterm)
            # Set by another process, so not awaitable: polled, as Hypercorn's workers poll it.
            while not event.is_set():  # noqa: ASYNC110
                await trio.sleep(SHUTDOWN_POLL_INTERVAL)
            nursery.cancel_scope.cancel()
    log.info("shutting_down", connections=app.hub.connection_count)
    app.hub.close_all()


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        _fail(f"invalid setting: {error}", EXIT_INVALID_SETTING)


settings = _settings()
configure_logging(settings.log_level, json=settings.log_json)
# Held for the life of the worker; with Redis, several workers share one audience: no lock.
_worker_lock = _take_worker_lock() if settings.redis_url is None else None
app: BroadcastApp = create_app(settings)
tune_gc()  # as ``trio-broadcast serve`` does, once everything is imported


@app.before_serving
async def watch_for_shutdown() -> None:
    event = hypercorn_shutdown_event()
    if event is not None:
        app.nursery.start_soon(close_clients_on_shutdown, app, event)
