"""Redis going away under servers that share it: nothing silently lost, nothing duplicated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest
import trio
from conftest import RunningServer
from redis_server import free_port, open_redis_server
from support import (
    JSON,
    connect,
    publish,
    read_until_closed,
    receive_json,
    receive_type,
    running_tasks,
)
from trio_websocket import WebSocketConnection

from trio_broadcast.errors import BackplaneUnavailableError
from trio_broadcast.server import redis_backplane
from trio_broadcast.server import replica as replica_module
from trio_broadcast.server.replica import BackplaneState

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/redis-server").exists(), reason="needs redis-server (scripts/system-deps.sh)"
)


def task_count() -> int:
    """Every task in this trio run."""
    return len(running_tasks())


async def wait_for_state(servers: list[RunningServer], state: BackplaneState) -> None:
    for server in servers:
        hub = server.app.hub
        await hub.wait_until(lambda hub=hub: hub.backplane_state is state)  # type: ignore[misc]


async def outcome(ws: WebSocketConnection, id_: str) -> JSON:
    """The ack or error for publish ``id_`` (the publisher receives nothing else here)."""
    frame = await receive_json(ws)
    assert frame["type"] in {"ack", "error"}, frame
    assert frame["id"] == id_, frame
    return frame


async def two_servers(
    stack: AsyncExitStack, server_factory: Callable[..., Any], url: str
) -> tuple[list[RunningServer], WebSocketConnection, list[WebSocketConnection]]:
    """Two servers on the Redis at ``url``, a publisher on the first and a listener on each,
    every client past its welcome."""
    servers = [await stack.enter_async_context(server_factory(redis_url=url)) for _ in (0, 1)]
    publisher = await stack.enter_async_context(connect(servers[0].ws_url))
    listeners = [await stack.enter_async_context(connect(server.ws_url)) for server in servers]
    for ws in (publisher, *listeners):
        await receive_type(ws, "welcome")
    return servers, publisher, listeners


async def closed_for_the_new_epoch(*clients: WebSocketConnection) -> None:
    """Each client is closed with 1012 and nothing before it."""
    for ws in clients:
        frames, code = await read_until_closed(ws)
        assert (frames, code) == ([], 1012)


async def resume_into_the_new_epoch(
    publishing: RunningServer, resuming: RunningServer, since: int, old_epoch: str
) -> tuple[JSON, JSON]:
    """A client resuming on ``resuming`` from the lost epoch is told what was lost, and a
    publish on ``publishing`` starts the new epoch at seq 1. Returns its welcome and that
    message."""
    query = f"?since={since}&epoch={old_epoch}"
    async with connect(publishing.ws_url) as publisher, connect(resuming.ws_url + query) as resumed:
        await receive_type(publisher, "welcome")
        again = await receive_type(resumed, "welcome")
        assert again["epoch"] == resuming.app.hub.epoch
        recovered = await receive_type(resumed, "recovered")
        assert (recovered["complete"], recovered["reason"]) == (False, "epoch_mismatch")
        await publish(publisher, "new")
        assert (await receive_type(publisher, "ack"))["seq"] == 1
        return again, await receive_type(resumed, "message")


async def test_redis_killed_mid_traffic_every_publish_is_delivered_or_refused(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    async with (
        open_redis_server(tmp_path, persistent=True) as redis,
        AsyncExitStack() as stack,
    ):
        servers, publisher, listeners = await two_servers(stack, server_factory, redis.url)
        a, b = servers
        received: list[list[JSON]] = [[], []]
        acks: dict[str, int] = {}
        refused: list[str] = []
        async with trio.open_nursery() as nursery:

            async def listen(index: int) -> None:
                while True:
                    frame = await receive_type(listeners[index], "message")
                    received[index].append(frame)
                    if frame["message"] == "end":
                        return

            for index in (0, 1):
                nursery.start_soon(listen, index)
            tasks_before = task_count()

            async def send(id_: str) -> None:
                await publish(publisher, id_, id=id_)
                frame = await outcome(publisher, id_)
                if frame["type"] == "ack":
                    acks[id_] = frame["seq"]
                else:
                    assert frame["code"] == "backplane_unavailable", frame
                    refused.append(id_)

            for number in range(20):
                await send(f"up-{number}")
            await redis.kill()
            await wait_for_state(servers, BackplaneState.DOWN)
            async with httpx.AsyncClient() as http:
                health = await http.get(a.url + "/health")
            assert health.status_code == 503
            assert health.json()["status"] == "backplane_unavailable"
            for number in range(20):
                await send(f"down-{number}")
            # Connected clients stayed connected.
            assert (a.app.hub.connection_count, b.app.hub.connection_count) == (2, 1)
            await redis.start()
            await wait_for_state(servers, BackplaneState.UP)
            for number in range(20):
                await send(f"again-{number}")
            assert task_count() == tasks_before  # no task left behind by the outage
            await send("end")

        # Redis kept what it had accepted (appendfsync always): no refused publish reached it,
        # every acknowledged one reached both servers' clients, once, in seq order.
        assert refused == [f"down-{number}" for number in range(20)]
        sent = [f"up-{n}" for n in range(20)] + [f"again-{n}" for n in range(20)] + ["end"]
        assert list(acks) == sent
        assert list(acks.values()) == list(range(1, 42))
        for frames in received:
            assert [frame["message"] for frame in frames] == sent
            assert [frame["seq"] for frame in frames] == list(range(1, 42))
        assert (a.app.hub.connection_count, b.app.hub.connection_count) == (2, 1)
        assert a.app.hub.statistics().errors == {"backplane_unavailable": 20}
        assert b.app.hub.statistics().errors == {}


async def test_redis_that_lost_its_data_starts_a_new_epoch_and_clients_are_told(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    async with (
        open_redis_server(tmp_path) as redis,
        server_factory(redis_url=redis.url) as server,
    ):
        async with connect(server.ws_url) as publisher, connect(server.ws_url) as listener:
            welcome = await receive_type(listener, "welcome")
            await receive_type(publisher, "welcome")
            for number in range(3):
                await publish(publisher, f"old-{number}")
                await receive_type(publisher, "ack")
            seen = [await receive_type(listener, "message") for _ in range(3)]
            await redis.kill()
            await wait_for_state([server], BackplaneState.DOWN)
            await redis.start()  # empty: no persistence
            await closed_for_the_new_epoch(publisher, listener)
        assert server.app.hub.epoch != welcome["epoch"]
        again, message = await resume_into_the_new_epoch(
            server, server, seen[-1]["seq"], welcome["epoch"]
        )
        assert again["seq"] == 0
        assert message["seq"] == 1


async def test_redis_back_from_an_older_snapshot_starts_a_new_epoch_and_clients_are_told(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    """The snapshot keeps the epoch but not the newest entries: the servers must not give
    those seqs out again (the clients had them) and must not wait for them either."""
    async with (
        open_redis_server(tmp_path) as redis,
        server_factory(redis_url=redis.url) as a,
        server_factory(redis_url=redis.url) as b,
    ):
        async with connect(a.ws_url) as publisher, connect(b.ws_url) as listener:
            welcome = await receive_type(listener, "welcome")
            await receive_type(publisher, "welcome")
            for number in range(5):
                if number == 2:  # the snapshot Redis comes back from: seqs 1 and 2
                    client = coredis.Redis.from_url(redis.url)
                    async with client:
                        await client.save()
                await publish(publisher, f"old-{number}")
                await receive_type(publisher, "ack")
            seen = [await receive_type(listener, "message") for _ in range(5)]
            await redis.kill()
            await wait_for_state([a, b], BackplaneState.DOWN)
            await redis.start()  # from the snapshot
            with trio.fail_after(10):  # a reconnect and a report interval, with room
                await closed_for_the_new_epoch(publisher, listener)
        assert a.app.hub.epoch == b.app.hub.epoch != welcome["epoch"]
        _, message = await resume_into_the_new_epoch(a, b, seen[-1]["seq"], welcome["epoch"])
        assert message["message"] == "new"


async def test_unreachable_redis_at_start_up_stops_the_server_before_it_listens(
    monkeypatch: pytest.MonkeyPatch, server_factory: Callable[..., Any]
) -> None:
    monkeypatch.setattr(replica_module, "BACKPLANE_STARTUP_TIMEOUT", 0.5)
    url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.RaisesGroup(BackplaneUnavailableError, flatten_subgroups=True):
        async with server_factory(redis_url=url):
            pytest.fail("the server started")


async def test_serve_without_redis_is_one_line_and_exit_status_1() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    command = [sys.executable, "-c", SERVE_WITH_SHORT_WAIT, "--port", "0", "--redis-url", url]
    result = await trio.run_process(
        command,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "TRIO_BROADCAST_LOG_LEVEL": "error"},
    )
    assert result.returncode == 1
    assert result.stdout == b""  # it never said it listens
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "no Redis backplane within 0.5 s" in lines[0]


# `trio-broadcast serve` with a short start-up wait for Redis (30 s by default).
SERVE_WITH_SHORT_WAIT = """
import sys
from trio_broadcast import cli
from trio_broadcast.server import replica
replica.BACKPLANE_STARTUP_TIMEOUT = 0.5
cli.main(["serve", *sys.argv[1:]])
"""


async def test_redis_killed_with_publishes_in_flight_each_gets_one_answer(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    """Up to eight publishes in flight when Redis dies: each gets exactly one ack or error, an
    acknowledged one reaches every client once, and an error is for one that was either never
    broadcast or (its reply lost) broadcast once and seen by its author as a message."""
    window = 8  # publishes in flight at most
    async with (
        open_redis_server(tmp_path, persistent=True) as redis,
        AsyncExitStack() as stack,
    ):
        servers, publisher, listeners = await two_servers(stack, server_factory, redis.url)
        a, b = servers
        answers: list[tuple[str, str]] = []  # (id, "ack" | "error"), in arrival order
        own_messages: list[str] = []  # refused, yet broadcast: the publisher sees it
        changed = trio.Event()
        received: list[list[JSON]] = [[], []]

        def notify() -> None:
            nonlocal changed
            changed.set()
            changed = trio.Event()

        async def until(predicate: Callable[[], bool]) -> None:
            while not predicate():
                await changed.wait()

        def count(kind: str) -> int:
            return sum(1 for _, answer in answers if answer == kind)

        async with trio.open_nursery() as nursery:

            async def listen(index: int) -> None:
                while True:
                    frame = await receive_type(listeners[index], "message")
                    received[index].append(frame)
                    if frame["message"] == "end":
                        return

            async def answers_to_publisher() -> None:
                while True:
                    frame = await receive_json(publisher)
                    if frame["type"] == "message":
                        own_messages.append(frame["message"])
                    else:
                        assert frame["type"] == "ack" or frame["code"] == "backplane_unavailable"
                        answers.append((frame["id"], frame["type"]))
                        if frame["id"] == "end":
                            return
                    notify()

            for index in (0, 1):
                nursery.start_soon(listen, index)
            nursery.start_soon(answers_to_publisher)
            tasks_before = task_count()
            recovered = trio.Event()

            async def outage() -> None:
                await until(lambda: count("ack") >= 30)
                await redis.kill()
                await until(lambda: count("error") >= 10)
                await redis.start()
                await wait_for_state(servers, BackplaneState.UP)
                recovered.set()

            nursery.start_soon(outage)
            sent = 0
            after_recovery = 0
            while after_recovery < 30:
                await until(lambda sent=sent: len(answers) >= sent - window)  # type: ignore[misc]
                await publish(publisher, f"m{sent}", id=f"m{sent}")
                sent += 1
                after_recovery += recovered.is_set()
            await until(lambda: len(answers) == sent)
            assert task_count() == tasks_before  # no task left behind by the outage
            await publish(publisher, "end", id="end")

        ids = [id_ for id_, _ in answers]
        assert len(ids) == len(set(ids)) == sent + 1  # one answer each
        acked = {id_ for id_, answer in answers if answer == "ack"}
        refused = {id_ for id_, answer in answers if answer == "error"}
        assert count("error") >= 10
        delivered = [frame["message"] for frame in received[0]]
        assert [frame["message"] for frame in received[1]] == delivered  # one order everywhere
        assert [frame["seq"] for frame in received[0]] == list(range(1, len(delivered) + 1))
        assert len(set(delivered)) == len(delivered)  # once each
        assert acked <= set(delivered)
        assert set(delivered) - acked == set(own_messages) <= refused
        assert (a.app.hub.connection_count, b.app.hub.connection_count) == (2, 1)


async def test_a_redis_that_stops_answering_times_out_into_errors_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_factory: Callable[..., Any]
) -> None:
    """A hung Redis (SIGSTOP: connections open, no answers) is a partition without resets: each
    command times out (shortened here), a publish gets the error, and if Redis runs it late,
    when it wakes, it is broadcast once, its author seeing it as a message."""
    monkeypatch.setattr(redis_backplane, "COMMAND_TIMEOUT", 1.0)
    monkeypatch.setattr(redis_backplane, "READ_BLOCK", 0.2)
    async with (
        open_redis_server(tmp_path) as redis,
        server_factory(redis_url=redis.url) as server,
        connect(server.ws_url) as publisher,
        connect(server.ws_url) as listener,
    ):
        await receive_type(publisher, "welcome")
        await receive_type(listener, "welcome")
        await publish(publisher, "first", id="first")
        assert (await outcome(publisher, "first"))["type"] == "ack"
        redis.pause()
        await publish(publisher, "late", id="late")
        assert (await outcome(publisher, "late"))["code"] == "backplane_unavailable"
        await wait_for_state([server], BackplaneState.DOWN)
        assert server.app.hub.connection_count == 2
        redis.resume()
        await wait_for_state([server], BackplaneState.UP)
        await publish(publisher, "next", id="next")
        own: list[str] = []
        while (frame := await receive_json(publisher))["type"] == "message":
            own.append(frame["message"])
        assert (frame["type"], frame["id"]) == ("ack", "next")
        heard: list[JSON] = []
        while not heard or heard[-1]["message"] != "next":
            heard.append(await receive_type(listener, "message"))
    assert [frame["message"] for frame in heard] in (["first", "next"], ["first", "late", "next"])
    assert [frame["seq"] for frame in heard] == list(range(1, len(heard) + 1))
    assert own == [frame["message"] for frame in heard if frame["message"] == "late"]
