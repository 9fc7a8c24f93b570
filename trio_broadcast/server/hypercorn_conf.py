"""Hypercorn settings derived from ``TRIO_BROADCAST_*`` variables, for the plain Hypercorn CLI::

    hypercorn --config python:trio_broadcast.server.hypercorn_conf trio_broadcast.server.asgi:app

Hypercorn reads the module-level names below as its configuration. They come from
:func:`.serve.hypercorn_config`, the same mapping ``trio-broadcast serve`` uses.

Hypercorn's master imports this module before it starts any worker, so start-up errors are
caught here, as one line on stderr and a non-zero exit: an invalid setting (status 2), an
address that cannot be bound (status 1; checked here unless ``-b``/``--bind`` is given, since
Hypercorn's own failure is a traceback), and ``-w``/``--workers`` above 1 on the command line
without ``TRIO_BROADCAST_REDIS_URL`` (status 3: one process holds the whole audience;
:mod:`.asgi` refuses a second worker as well, for configurations that do not come through here,
but Hypercorn 0.18 may then exit with 0). With the Redis URL, several workers share one
audience through the backplane.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import ConfigError
from .config import Settings
from .serve import hypercorn_config

EXIT_CANNOT_START = 1  # as ``trio-broadcast serve``
EXIT_INVALID_SETTING = 2
EXIT_SEVERAL_WORKERS = 3  # as a second worker refused by .asgi
BIND_CHECKED = "TRIO_BROADCAST_BIND_CHECKED"  # set once the master checked the address


def _fail(message: str, status: int) -> NoReturn:
    print(f"trio-broadcast: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def workers_from_argv(argv: Sequence[str]) -> int | None:
    """The worker count given on Hypercorn's command line (``-w N``, ``-wN``, ``--workers[=]N``).

    None when it is not given (or not a number: Hypercorn reports that itself).
    """
    for index, arg in enumerate(argv):
        if arg in ("-w", "--workers"):
            value = argv[index + 1] if index + 1 < len(argv) else ""
        elif arg.startswith("--workers="):
            value = arg.removeprefix("--workers=")
        elif arg.startswith("-w") and len(arg) > 2:
            value = arg[2:]
        else:
            continue
        try:
            return int(value)
        except ValueError:
            return None
    return None


def bind_given(argv: Sequence[str]) -> bool:
    """Whether Hypercorn's command line names its own addresses (``-b``/``--bind``)."""
    return any(arg in ("-b", "--bind") or arg.startswith(("-b", "--bind=")) for arg in argv)


def check_bind(host: str, port: int) -> None:
    """Bind ``host:port`` as Hypercorn will (``SO_REUSEADDR``), and let it go again.

    Raises:
        OSError: it cannot be bound (in use, not this host's address, no such name).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


try:
    _settings = Settings.from_env()
except ConfigError as error:
    _fail(f"invalid setting: {error}", EXIT_INVALID_SETTING)
if (workers_from_argv(sys.argv[1:]) or 1) > 1 and _settings.redis_url is None:
    _fail(
        "refusing to run several Hypercorn workers: trio-broadcast keeps its audience in one "
        "process, and several workers would split clients into groups that never see each "
        "other's messages; run Hypercorn with one worker (-w 1), or share one audience "
        "through Redis (TRIO_BROADCAST_REDIS_URL)",
        EXIT_SEVERAL_WORKERS,
    )
# Checked once, by the master: its workers import this module again while they unpickle their
# configuration, when the master holds the address already (and inherit the variable).
if not bind_given(sys.argv[1:]) and BIND_CHECKED not in os.environ:
    try:
        check_bind(_settings.host, _settings.port)
    except OSError as error:
        _fail(f"cannot start on {_settings.host}:{_settings.port}: {error}", EXIT_CANNOT_START)
    os.environ[BIND_CHECKED] = "1"
_config = hypercorn_config(_settings)

worker_class = "trio"
# Without Redis the hub is in memory: one worker holds the whole audience. With it, Hypercorn's
# -w N on the command line wins over this.
workers = 1
bind = [f"{_settings.host}:{_settings.port}"]
backlog = _config.backlog
websocket_max_message_size = _config.websocket_max_message_size
websocket_ping_interval = _config.websocket_ping_interval
read_timeout = _config.read_timeout
graceful_timeout = _config.graceful_timeout
include_server_header = _config.include_server_header
trio_broadcast_compression = _settings.compression  # read by server/_hypercorn.py (F4)
