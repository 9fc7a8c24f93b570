"""Hypercorn settings derived from ``TRIO_BROADCAST_*`` variables, for the plain Hypercorn CLI::

    hypercorn --config python:trio_broadcast.hypercorn_conf trio_broadcast.asgi:app

Hypercorn reads the module-level names below as its configuration. They come from
:func:`.server.hypercorn_config`, the same mapping ``trio-broadcast serve`` uses.
"""

from __future__ import annotations

from .config import Settings
from .serve import hypercorn_config

_settings = Settings.from_env()
_config = hypercorn_config(_settings)

worker_class = "trio"
workers = 1  # the hub is in memory: one worker holds the whole audience
bind = [f"{_settings.host}:{_settings.port}"]
backlog = _config.backlog
websocket_max_message_size = _config.websocket_max_message_size
websocket_ping_interval = _config.websocket_ping_interval
read_timeout = _config.read_timeout
graceful_timeout = _config.graceful_timeout
include_server_header = _config.include_server_header
