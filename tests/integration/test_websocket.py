"""The WebSocket endpoint against a real Hypercorn server, with real trio-websocket clients."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

import pytest
import trio
from conftest import RunningServer
from support import (
    RawClient,
    close_code,
    connect,
    handshake_status,
    publish,
    read_until_closed,
    receive_json,
    receive_type,
    unbatch,
)
from trio_websocket import (
    ConnectionClosed,
)


async def test_welcome_is_first_and_describes_the_connection(server: RunningServer) -> None:
    async with connect(server.ws_url) as ws:
        welcome = await receive_type(ws, "welcome")
    assert welcome["seq"] == 0
    assert welcome["epoch"] == server.app.hub.epoch
    assert welcome["connections"] == 1
    assert welcome["batch"] is False
    assert len(welcome["client_id"]) == 12
    assert welcome["limits"]["max_message_bytes"] == server.app.settings.max_message_bytes
    assert welcome["server"].startswith("trio-broadcast/")


async def test_message_reaches_others_but_not_the_sender_who_gets_an_ack(
    server: RunningServer,
) -> None:
    async with (
        connect(server.ws_url) as alice,
        connect(server.ws_url) as bob,
        connect(server.ws_url) as carol,
    ):
        welcomes = [await receive_type(ws, "welcome") for ws in (alice, bob, carol)]
        await publish(alice, "hello", id="a-1")
        ack = await receive_type(alice, "ack")
        assert ack["id"] == "a-1"
        assert ack["seq"] == 1
        for ws in (bob, carol):
            message = await receive_type(ws, "message")
            assert message["message"] == "hello"
            assert message["seq"] == 1
            assert message["sender"] == welcomes[0]["client_id"]
            assert message["timestamp"] == ack["timestamp"]
            assert datetime.fromisoformat(message["timestamp"]).utcoffset() is not None
        # Alice got nothing but her ack: the next thing she sees is Bob's message.
        await publish(bob, "reply")
        reply = await receive_type(alice, "message")
        assert (reply["message"], reply["seq"]) == ("reply", 2)


async def test_fifty_clients_receive_every_message_in_order(server: RunningServer) -> None:
    count, messages = 50, 40
    async with trio.open_nursery() as nursery:
        received: dict[int, list[int]] = {}
        ready = trio.Semaphore(0)

        async def listener(index: int) -> None:
            async with connect(server.ws_url) as ws:
                await receive_type(ws, "welcome")
                ready.release()
                seqs = received.setdefault(index, [])
                while len(seqs) < messages:
                    frame = await receive_type(ws, "message")
                    seqs.append(frame["seq"])
                    assert frame["message"] == f"m{frame['seq']}"

        for index in range(count):
            nursery.start_soon(listener, index)
        for _ in range(count):
            await ready.acquire()
        async with connect(server.ws_url) as sender:
            await receive_type(sender, "welcome")
            for seq in range(1, messages + 1):
                await publish(sender, f"m{seq}")
                assert (await receive_type(sender, "ack"))["seq"] == seq
    assert all(seqs == list(range(1, messages + 1)) for seqs in received.values())
    assert len(received) == count


@pytest.mark.parametrize("write_delay", [0.0, 0.01])
async def test_batch_client_gets_every_event_in_order(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]], write_delay: float
) -> None:
    async with (
        server_factory(write_delay=write_delay) as server,
        connect(server.ws_url + "?batch=1") as listener,
        connect(server.ws_url) as sender,
    ):
        assert (await receive_type(listener, "welcome"))["batch"] is True
        await receive_type(sender, "welcome")
        for n in range(1, 201):
            await publish(sender, f"m{n}")
        for _ in range(200):
            await receive_type(sender, "ack")
        seqs: list[int] = []
        while len(seqs) < 200:
            frame = await receive_json(listener)
            events = unbatch(frame)
            if frame["type"] == "batch":
                assert len(events) > 1
            seqs.extend(event["seq"] for event in events)
        assert seqs == list(range(1, 201))


async def test_resume_replays_missed_messages_then_reports_complete(
    server: RunningServer,
) -> None:
    async with connect(server.ws_url) as sender:
        welcome = await receive_type(sender, "welcome")
        epoch = welcome["epoch"]
        async with connect(server.ws_url) as listener:
            await receive_type(listener, "welcome")
            await publish(sender, "one")
            last_seen = (await receive_type(listener, "message"))["seq"]
        for text in ("two", "three", "four"):
            await publish(sender, text)
        for _ in range(4):
            await receive_type(sender, "ack")
        url = f"{server.ws_url}?since={last_seen}&epoch={epoch}"
        async with connect(url) as listener:
            assert (await receive_type(listener, "welcome"))["seq"] == 4
            replayed = [await receive_type(listener, "message") for _ in range(3)]
            recovered = await receive_type(listener, "recovered")
            await publish(sender, "live")
            live = await receive_type(listener, "message")
    assert [m["message"] for m in replayed] == ["two", "three", "four"]
    assert [m["seq"] for m in replayed] == [2, 3, 4]
    assert recovered == {"type": "recovered", "complete": True, "since": 1, "replayed": 3, "seq": 4}
    assert live["seq"] == 5


async def test_resume_past_the_history_says_what_was_lost(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with (
        server_factory(history_size=3) as server,
        connect(server.ws_url) as sender,
    ):
        epoch = (await receive_type(sender, "welcome"))["epoch"]
        for n in range(1, 11):
            await publish(sender, f"m{n}")
            await receive_type(sender, "ack")
        async with connect(f"{server.ws_url}?since=2&epoch={epoch}") as late:
            await receive_type(late, "welcome")
            replayed = [await receive_type(late, "message") for _ in range(3)]
            recovered = await receive_type(late, "recovered")
    assert [m["seq"] for m in replayed] == [8, 9, 10]
    assert recovered["complete"] is False
    assert recovered["reason"] == "history_expired"
    assert recovered["first_seq"] == 8


async def test_resume_from_another_epoch_replays_this_epoch(server: RunningServer) -> None:
    async with connect(server.ws_url) as sender:
        await receive_type(sender, "welcome")
        await publish(sender, "sent in new epoch")
        sent = await receive_type(sender, "ack")
    async with connect(f"{server.ws_url}?since=7&epoch=not-this-one") as ws:
        await receive_type(ws, "welcome")
        replayed = await receive_type(ws, "message")
        recovered = await receive_type(ws, "recovered")
    assert (replayed["message"], replayed["seq"]) == ("sent in new epoch", sent["seq"])
    assert recovered["complete"] is False
    assert recovered["reason"] == "epoch_mismatch"
    assert recovered["replayed"] == recovered["seq"]


async def test_a_new_client_asks_for_the_last_broadcasts(server: RunningServer) -> None:
    async with connect(server.ws_url) as sender:
        await receive_type(sender, "welcome")
        for n in range(1, 4):
            await publish(sender, f"m{n}")
            await receive_type(sender, "ack")
        async with connect(f"{server.ws_url}?last=2") as newcomer:
            welcome = await receive_type(newcomer, "welcome")
            earlier = [await receive_type(newcomer, "message") for _ in range(2)]
            recovered = await receive_type(newcomer, "recovered")
    assert [m["message"] for m in earlier] == ["m2", "m3"]
    assert all(m["seq"] <= welcome["seq"] for m in earlier)
    assert recovered == {
        "type": "recovered",
        "complete": True,
        "since": welcome["seq"] - 2,
        "replayed": 2,
        "seq": welcome["seq"],
    }


async def test_frames_sent_during_a_long_replay_are_taken_in_order_after_it(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    # The replay outgrows the socket's buffers, so the client's frames arrive while the server
    # is still greeting it: they wait for the app's task, which takes them before it hands the
    # connection over (a detached connection's pre-hand-over path), then the rest is as usual.
    async with server_factory(publish_rate=None, max_message_bytes=20_000) as server:
        big = "x" * 15_000
        async with connect(server.ws_url) as sender:
            await receive_type(sender, "welcome")
            for n in range(100):
                await publish(sender, big, id=f"s{n}")
                await receive_type(sender, "ack")
        client = await RawClient.connect(server.info.host, server.info.port, "?last=100")
        for n in range(3):
            await client.send_text(json.dumps({"message": f"early {n}", "id": f"e{n}"}))
        frames = [json.loads(text) for text in await client.read_messages(1 + 100 + 1 + 3)]
        await client.send_text(json.dumps({"message": "later", "id": "l"}))
        later = json.loads((await client.read_messages(1 + 100 + 1 + 4))[-1])
        client.close()
    assert frames[0]["type"] == "welcome"
    assert [frame["seq"] for frame in frames[1:101]] == list(range(1, 101))
    assert frames[101]["type"] == "recovered"
    assert [(frame["type"], frame["id"], frame["seq"]) for frame in frames[102:]] == [
        ("ack", "e0", 101),
        ("ack", "e1", 102),
        ("ack", "e2", 103),
    ]
    assert (later["type"], later["id"], later["seq"]) == ("ack", "l", 104)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"text": "hi"}', "unknown_field"),
        ("{}", "invalid_message"),
        ('{"message": 5}', "invalid_message"),
        ('{"message": "hi", "id": 7}', "invalid_id"),
        (b"\x00\x01", "binary_not_supported"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_carries_on(
    server: RunningServer, frame: str | bytes, code: str
) -> None:
    async with (
        connect(server.ws_url) as bad,
        connect(server.ws_url) as other,
    ):
        await receive_type(bad, "welcome")
        await receive_type(other, "welcome")
        await bad.send_message(frame)
        error = await receive_type(bad, "error")
        assert error["code"] == code
        assert error["detail"]
        # Same connection still publishes; the other client saw nothing of the bad frame.
        await publish(bad, "still here")
        assert (await receive_type(bad, "ack"))["seq"] == 1
        assert (await receive_type(other, "message"))["message"] == "still here"
    assert server.app.hub.statistics().errors == {code: 1}


async def test_oversized_frame_closes_with_1009_and_others_carry_on(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with (
        server_factory(max_message_bytes=1000) as server,
        connect(server.ws_url) as other,
    ):
        await receive_type(other, "welcome")
        async with connect(server.ws_url) as big:
            await receive_type(big, "welcome")
            await publish(big, "x" * 2000)
            with pytest.raises(ConnectionClosed) as closed:
                await big.get_message()
            assert close_code(closed.value) == 1009
        await server.wait_for_connections(1)
        async with connect(server.ws_url) as sender:
            await receive_type(sender, "welcome")
            await publish(sender, "x" * 900)
            assert (await receive_type(other, "message"))["seq"] == 1


async def test_foreign_origin_is_refused_with_403(server: RunningServer) -> None:
    status = await handshake_status(
        server.info.host, server.info.port, "/ws/events", "Origin: https://evil.example\r\n"
    )
    assert status == 403
    assert server.app.hub.statistics().evictions == {"origin_rejected": 1}
    assert server.app.hub.open_sessions == 0


async def test_same_and_listed_origins_are_allowed(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with server_factory(allowed_origins=("https://app.example",)) as server:
        own = f"http://127.0.0.1:{server.info.port}".encode()
        for origin in (own, b"https://app.example"):
            async with connect(server.ws_url, extra_headers=[(b"Origin", origin)]) as ws:
                welcome = await receive_type(ws, "welcome")
                assert welcome["connections"] == 1
        stats = server.app.hub.statistics()
        assert (stats.connections_total, stats.evictions) == (2, {})


async def test_connection_limit_closes_newcomers_with_1013(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with (
        server_factory(max_connections=2) as server,
        connect(server.ws_url) as first,
        connect(server.ws_url) as second,
    ):
        await receive_type(first, "welcome")
        await receive_type(second, "welcome")
        async with connect(server.ws_url) as third:
            with pytest.raises(ConnectionClosed) as closed:
                await third.get_message()
        assert close_code(closed.value) == 1013
        assert server.app.hub.connection_count == 2
        # Room again once someone leaves.
        await first.aclose()
        await server.wait_for_connections(1)
        async with connect(server.ws_url) as fourth:
            assert (await receive_type(fourth, "welcome"))["connections"] == 2


async def test_publishing_over_the_rate_is_refused_then_closed_with_1008(
    server_factory: Callable[..., AbstractAsyncContextManager[RunningServer]],
) -> None:
    async with (
        server_factory(publish_rate=0.001, publish_burst=2, rate_limit_strikes=3) as server,
        connect(server.ws_url) as flooder,
    ):
        await receive_type(flooder, "welcome")
        for n in range(10):
            await publish(flooder, f"m{n}", id=f"i{n}")
        frames, code = await read_until_closed(flooder)
        assert code == 1008
        # Replies name their publish by id; a refusal may overtake the acks of earlier
        # publishes (those wait for the broadcaster), never another refusal.
        kinds = {frame["id"]: frame.get("code", frame["type"]) for frame in frames}
        assert len(kinds) == len(frames)
        # The two within the burst are acked; the close may overtake the second's ack, and the
        # last refusals queued.
        assert kinds.pop("i0") == "ack"
        assert kinds.pop("i1", "ack") == "ack"
        assert list(kinds) == [f"i{n}" for n in range(2, 2 + len(kinds))]
        assert 1 <= len(kinds) <= 3
        assert set(kinds.values()) == {"rate_limited"}
        await server.wait_for_connections(0)
        assert server.app.hub.statistics().evictions == {"rate_abuse": 1}


@pytest.mark.parametrize("query", ["since=abc&epoch=x", "since=3", "since=-1&epoch=x"])
async def test_invalid_resume_query_is_a_400(server: RunningServer, query: str) -> None:
    status = await handshake_status(server.info.host, server.info.port, f"/ws/events?{query}")
    assert status == 400


async def test_graceful_shutdown_closes_clients_with_1001(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(server.ws_url) as ws:
        await receive_type(ws, "welcome")
        server.shutdown()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert close_code(closed.value) == 1001
    await server.stopped.wait()
    # No connection ended in an exception (Hypercorn logs those as errors and carries on).
    assert [record.getMessage() for record in caplog.records if record.levelno >= 40] == []
