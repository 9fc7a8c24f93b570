"""The app for the plain Hypercorn CLI, configured from ``TRIO_BROADCAST_*`` variables::

    hypercorn --config python:trio_broadcast.hypercorn_conf trio_broadcast.asgi:app

One process holds the whole audience (the hub is in memory), so a second Hypercorn worker of the
same master refuses to start: its start-up fails, and Hypercorn then stops every worker with an
error instead of silently splitting clients between hubs that cannot see each other.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
from typing import IO

import structlog

from ..logs import configure_logging
from .app import BroadcastApp, create_app
from .config import Settings

log = structlog.get_logger("trio_broadcast.server.asgi")

settings = Settings.from_env()
configure_logging(settings.log_level, json=settings.log_json)
app: BroadcastApp = create_app(settings)
_worker_lock: IO[bytes] | None = None  # held for the life of the worker


@app.before_serving
async def refuse_a_second_worker() -> None:
    _take_worker_lock()


def _take_worker_lock() -> None:
    """Take a lock shared by the workers of one Hypercorn master; fail if another holds it.

    Start-up only (a local file, no network): blocking here is fine.
    """
    global _worker_lock
    if multiprocessing.parent_process() is None:
        return  # no master: ``hypercorn -w 0`` or an embedding program
    path = os.path.join(tempfile.gettempdir(), f"trio-broadcast-workers-{os.getppid()}.lock")
    handle = open(path, "wb")  # noqa: SIM115 - kept open: the lock lives as long as the worker
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        message = (
            "trio-broadcast keeps its audience in one process: run Hypercorn with one worker "
            "(-w 1); several workers would split clients into groups that never see each "
            "other's messages"
        )
        log.critical("second_worker_refused", detail=message)
        raise RuntimeError(message) from None
    _worker_lock = handle
