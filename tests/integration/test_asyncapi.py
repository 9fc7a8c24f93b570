"""The server serves its AsyncAPI document, and every kind of frame it sends validates against it
(``receive_json`` checks each frame; this test makes the server send each kind)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from conftest import RunningServer
from protocol_schema import load_document
from support import JSON, connect, publish, receive_json, receive_type
from trio_websocket import WebSocketConnection


async def test_asyncapi_document_is_served_as_json(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == load_document()


async def test_every_kind_of_server_frame_matches_the_document(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    seen: Counter[str] = Counter()

    async def receive(ws: WebSocketConnection, type_: str) -> JSON:
        frame = await receive_type(ws, type_)
        seen[type_] += 1
        return frame

    async with (
        server_factory(publish_rate=0.01, publish_burst=3, rate_limit_strikes=None) as server,
        connect(server.ws_url) as sender,
    ):
        welcome = await receive(sender, "welcome")
        await publish(sender, "one")
        await publish(sender, "two", id="c-2")
        await publish(sender, "three", id="c-3")
        for _ in range(3):
            await receive(sender, "ack")
        await publish(sender, "refused", id="c-4")  # the burst of 3 is spent, for 100 s
        assert (await receive(sender, "error"))["id"] == "c-4"
        await sender.send_message("{")
        assert (await receive(sender, "error"))["code"] == "invalid_json"

        # A batching client that asks for history gets the replay handed to it in one go.
        async with connect(server.ws_url + "?batch=1&last=3") as batching:
            await receive(batching, "welcome")
            replay = await receive(batching, "batch")
            assert [event["message"] for event in replay["events"]] == ["one", "two", "three"]
            assert (await receive(batching, "recovered"))["complete"] is True

        resume = f"?since=1&epoch={welcome['epoch']}"
        async with connect(server.ws_url + resume) as resumed:
            await receive(resumed, "welcome")
            assert (await receive(resumed, "message"))["seq"] == 2
            assert (await receive(resumed, "message"))["seq"] == 3
            assert (await receive(resumed, "recovered"))["complete"] is True

        async with connect(server.ws_url + "?since=1&epoch=another") as restarted:
            await receive(restarted, "welcome")
            frames = [await receive_json(restarted) for _ in range(4)]
            assert [frame["type"] for frame in frames] == ["message"] * 3 + ["recovered"]
            assert frames[-1]["reason"] == "epoch_mismatch"
            seen["recovered"] += 1
    assert set(seen) == {"welcome", "message", "ack", "error", "batch", "recovered"}, seen
