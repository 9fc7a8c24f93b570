"""Hypercorn settings derived from ``TRIO_BROADCAST_*`` variables, for the plain Hypercorn CLI::

    hypercorn --config python:trio_broadcast.hypercorn_conf trio_broadcast.asgi:app

Hypercorn reads the module-level names below as its configuration.
"""

from __future__ import annotations

from .config import Settings

_settings = Settings.from_env()

worker_class = "trio"
workers = 1  # the hub is in memory: one worker holds the whole audience
bind = [f"{_settings.host}:{_settings.port}"]
backlog = 2048
websocket_max_message_size = _settings.max_message_bytes
websocket_ping_interval = _settings.ping_interval
read_timeout = _settings.idle_timeout
graceful_timeout = _settings.shutdown_timeout
include_server_header = False
