"""A fix for Hypercorn's WebSocket pinger, installed when the app is created.

Hypercorn (0.17, 0.18) sends pings from a task that sleeps ``websocket_ping_interval`` between
pings and only then looks whether the connection closed. The connection's task group waits for
that task, so every closed WebSocket lingers (memory, a task) for up to a whole ping interval, and
a graceful shutdown always runs into ``graceful_timeout``. The replacement pinger runs in a cancel
scope that is cancelled as soon as the stream is closed.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.protocol.ws_stream import WSStream
from wsproto.events import Ping

_PATCHED = "_trio_broadcast_pinger"


async def _send_pings(self: Any) -> None:
    with trio.CancelScope() as scope:
        self._ping_scope = scope
        while not self.closed:
            await self._send_wsproto_event(Ping())
            await trio.sleep(self.config.websocket_ping_interval)


def install() -> None:
    """Replace ``WSStream._send_pings`` (idempotent)."""
    if getattr(WSStream, _PATCHED, False):
        return
    original_handle = WSStream.handle

    async def handle(self: Any, event: Any) -> None:
        await original_handle(self, event)
        scope = getattr(self, "_ping_scope", None)
        if self.closed and scope is not None:
            scope.cancel()

    WSStream._send_pings = _send_pings  # type: ignore[method-assign]
    WSStream.handle = handle  # type: ignore[method-assign]
    setattr(WSStream, _PATCHED, True)
