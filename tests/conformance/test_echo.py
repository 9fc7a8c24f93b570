"""The echo endpoint ``make conformance`` fuzzes is the server's own stack with ``/echo``."""

from __future__ import annotations

import trio
from echo import ECHO_PATH, serve_echo_app
from support import connect, receive_type


async def test_echo_sends_back_text_and_binary_while_the_broadcast_still_serves() -> None:
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve_echo_app)
        base = f"ws://127.0.0.1:{info.port}"
        async with connect(base + ECHO_PATH) as echo:
            await echo.send_message("héllo")
            assert await echo.get_message() == "héllo"
            await echo.send_message(b"\x00\xff")
            assert await echo.get_message() == b"\x00\xff"
        async with connect(base + "/ws/events") as events:
            await receive_type(events, "welcome")
        nursery.cancel_scope.cancel()
