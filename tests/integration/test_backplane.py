"""Several servers on one real Redis (``redis_url``): one audience, one order, one history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import RunningServer
from redis_server import RedisServer, open_redis_cluster, open_redis_server
from support import (
    JSON,
    connect,
    publish,
    read_until_closed,
    receive_json,
    receive_type,
    unbatch,
)
from trio_websocket import WebSocketConnection

from trio_broadcast.server.backplane import AppendRequest, ReadTo
from trio_broadcast.server.redis_backplane import RedisBackplane

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/redis-server").exists(), reason="needs redis-server (scripts/system-deps.sh)"
)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with open_redis_server(tmp_path) as server:
        yield server


async def start_servers(
    stack: AsyncExitStack, factory: Callable[..., Any], count: int, url: str, **settings: Any
) -> list[RunningServer]:
    return [
        await stack.enter_async_context(factory(redis_url=url, **settings)) for _ in range(count)
    ]


async def events_until(ws: WebSocketConnection, count: int) -> list[JSON]:
    """The next ``count`` messages and acks (errors fail the test)."""
    events: list[JSON] = []
    while len(events) < count:
        frame = await receive_json(ws)
        assert frame["type"] in {"message", "ack"}, frame
        events.append(frame)
    return events


@pytest.mark.parametrize("servers", [2, 3])
async def test_publishes_on_every_server_reach_every_client_once_in_one_order(
    redis: RedisServer, server_factory: Callable[..., Any], servers: int
) -> None:
    per_publisher = 15
    async with AsyncExitStack() as stack:
        nodes = await start_servers(stack, server_factory, servers, redis.url)
        # Two clients on each server; the first of each publishes.
        clients = [
            await stack.enter_async_context(connect(node.ws_url)) for node in nodes for _ in (0, 1)
        ]
        welcomes = [await receive_type(ws, "welcome") for ws in clients]
        assert len({welcome["epoch"] for welcome in welcomes}) == 1  # the log's, not a process's
        publishers = clients[::2]
        total = per_publisher * len(publishers)
        received: dict[int, list[JSON]] = {}
        async with trio.open_nursery() as nursery:

            async def receive(index: int) -> None:
                received[index] = await events_until(clients[index], total)

            for index in range(len(clients)):
                nursery.start_soon(receive, index)
            for round_ in range(per_publisher):
                for number, ws in enumerate(publishers):
                    await publish(ws, f"p{number}-{round_}", id=f"{number}-{round_}")

        # Every client: seqs 1..total, one each, in order.
        for index, events in received.items():
            assert [event["seq"] for event in events] == list(range(1, total + 1)), index
        # The same message at each seq everywhere; a publisher has its ack there instead.
        by_seq: dict[int, str] = {}
        for index, events in received.items():
            for event in events:
                text = event["message"] if event["type"] == "message" else f"p{event['id']}"
                assert by_seq.setdefault(event["seq"], text.replace("p", "", 1)) == text.replace(
                    "p", "", 1
                )
            acks = [event for event in events if event["type"] == "ack"]
            if index % 2 == 0:  # a publisher: an ack for each of its own, no own message
                number = index // 2
                assert [ack["id"] for ack in acks] == [
                    f"{number}-{r}" for r in range(per_publisher)
                ]
                sender = welcomes[index]["client_id"]
                assert all(e["sender"] != sender for e in events if e["type"] == "message")
            else:
                assert acks == []
        for node in nodes:
            assert node.app.hub.seq == total


async def test_a_client_dropped_from_one_server_resumes_on_another_with_nothing_missed(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await start_servers(stack, server_factory, 2, redis.url)
        async with connect(b.ws_url) as publisher:
            await receive_type(publisher, "welcome")
            async with connect(a.ws_url) as reader:
                welcome = await receive_type(reader, "welcome")
                for number in range(3):
                    await publish(publisher, f"before-{number}")
                    await receive_type(publisher, "ack")
                seen = [await receive_type(reader, "message") for _ in range(3)]
            for number in range(5):
                await publish(publisher, f"after-{number}")
                await receive_type(publisher, "ack")
            since = seen[-1]["seq"]
            query = f"?since={since}&epoch={welcome['epoch']}"
            async with connect(b.ws_url + query) as resumed:
                again = await receive_type(resumed, "welcome")
                assert again["epoch"] == welcome["epoch"]
                replay = [await receive_type(resumed, "message") for _ in range(5)]
                recovered = await receive_type(resumed, "recovered")
        assert [frame["message"] for frame in replay] == [f"after-{n}" for n in range(5)]
        assert [frame["seq"] for frame in replay] == list(range(since + 1, since + 6))
        assert recovered["complete"] is True


async def test_a_server_started_later_resumes_from_the_log(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        (a,) = await start_servers(stack, server_factory, 1, redis.url)
        async with connect(a.ws_url) as publisher:
            welcome = await receive_type(publisher, "welcome")
            for number in range(4):
                await publish(publisher, f"m{number}")
                await receive_type(publisher, "ack")
        (b,) = await start_servers(stack, server_factory, 1, redis.url)
        async with connect(b.ws_url + f"?since=1&epoch={welcome['epoch']}") as late:
            assert (await receive_type(late, "welcome"))["seq"] == 4
            replay = [await receive_type(late, "message") for _ in range(3)]
            recovered = await receive_type(late, "recovered")
        assert [frame["message"] for frame in replay] == ["m1", "m2", "m3"]
        assert recovered["complete"] is True


async def test_health_reports_the_backplane(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        (a,) = await start_servers(stack, server_factory, 1, redis.url)
        async with httpx.AsyncClient() as http:
            response = await http.get(a.url + "/health")
        assert response.status_code == 200
        assert response.json()["backplane"] == "up"


async def test_a_resume_older_than_the_history_reports_the_gap(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await start_servers(stack, server_factory, 2, redis.url, history_size=3)
        async with connect(a.ws_url) as publisher, connect(b.ws_url) as watcher:
            welcome = await receive_type(publisher, "welcome")
            await receive_type(watcher, "welcome")
            for number in range(6):
                await publish(publisher, f"m{number}")
                await receive_type(publisher, "ack")
            for _ in range(6):  # B has read them all
                await receive_type(watcher, "message")
        async with connect(b.ws_url + f"?since=1&epoch={welcome['epoch']}") as late:
            await receive_type(late, "welcome")
            replay = [await receive_type(late, "message") for _ in range(3)]
            recovered = await receive_type(late, "recovered")
        assert [frame["seq"] for frame in replay] == [4, 5, 6]
        assert recovered["complete"] is False
        assert recovered["reason"] == "history_expired"
        assert recovered["first_seq"] == 4


async def test_a_unix_socket_url_and_a_batching_client(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await start_servers(stack, server_factory, 2, redis.unix_url)
        publisher = await stack.enter_async_context(connect(a.ws_url))
        batching = await stack.enter_async_context(connect(b.ws_url + "?batch=1"))
        await receive_type(publisher, "welcome")
        await receive_type(batching, "welcome")
        for number in range(10):
            await publish(publisher, f"m{number}")
        acks = [await receive_type(publisher, "ack") for _ in range(10)]
        events: list[JSON] = []
        while len(events) < 10:
            events += unbatch(await receive_json(batching))
        assert [ack["seq"] for ack in acks] == list(range(1, 11))
        assert [event["message"] for event in events] == [f"m{n}" for n in range(10)]


async def test_a_restarted_server_keeps_the_epoch_and_its_clients_resume_complete(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        (b,) = await start_servers(stack, server_factory, 1, redis.url)
        publisher = await stack.enter_async_context(connect(b.ws_url))
        await receive_type(publisher, "welcome")
        async with server_factory(redis_url=redis.url) as a:
            async with connect(a.ws_url) as client:
                welcome = await receive_type(client, "welcome")
                await publish(publisher, "before")
                await receive_type(publisher, "ack")
                seen = await receive_type(client, "message")
                a.shutdown()
                frames, code = await read_until_closed(client)
                assert (frames, code) == ([], 1001)
            await a.stopped.wait()
        for number in range(3):  # while it is down
            await publish(publisher, f"meanwhile-{number}")
            await receive_type(publisher, "ack")
        async with server_factory(redis_url=redis.url) as again:
            query = f"?since={seen['seq']}&epoch={welcome['epoch']}"
            async with connect(again.ws_url + query) as client:
                assert (await receive_type(client, "welcome"))["epoch"] == welcome["epoch"]
                replay = [await receive_type(client, "message") for _ in range(3)]
                recovered = await receive_type(client, "recovered")
        assert [frame["message"] for frame in replay] == [f"meanwhile-{n}" for n in range(3)]
        assert recovered["complete"] is True


@pytest.mark.slow
async def test_every_server_counts_the_clusters_connections_and_a_gone_one_drops_out(
    redis: RedisServer, server_factory: Callable[..., Any]
) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(server_factory(redis_url=redis.url))
        for _ in range(2):
            await receive_type(await stack.enter_async_context(connect(first.ws_url)), "welcome")
        async with (
            server_factory(redis_url=redis.url) as second,
            connect(second.ws_url) as third_client,
        ):
            await receive_type(third_client, "welcome")
            for node in (first, second):
                hub = node.app.hub
                await hub.wait_until(lambda hub=hub: hub.cluster_connections == 3)
            async with httpx.AsyncClient(base_url=first.url) as http:
                health = (await http.get("/health")).json()
                status = (await http.get("/api/status")).json()
                metrics = (await http.get("/metrics")).text
            assert (health["connections"], health["cluster_connections"]) == (2, 3)
            assert status["cluster_connections"] == 3
            assert first.app.hub.replica is not None
            assert status["node"] == first.app.hub.replica.node_id
            assert "trio_broadcast_cluster_connections 3.0" in metrics
            async with connect(second.ws_url) as fourth_client:
                welcome = await receive_type(fourth_client, "welcome")
            assert (welcome["connections"], welcome["cluster_connections"]) == (2, 3)
        # The second server is gone (its client with it): its count expires from the cluster's.
        hub = first.app.hub
        with trio.fail_after(30):
            await hub.wait_until(lambda: hub.cluster_connections == 2)


@pytest.mark.parametrize("max_age", [1.0, None])
async def test_the_stream_is_trimmed_by_age_at_a_mark(
    redis: RedisServer, max_age: float | None
) -> None:
    """Entries appended before the newest mark at least ``max_age`` old go; the rest stay. Real
    time passes here: the marks are Redis's own clock, a second or more apart."""
    backplane = RedisBackplane(redis.url, "t:", max_length=1000, max_age=max_age)
    requests = [AppendRequest(key, "client", f"m{key}") for key in range(1, 4)]
    async with backplane.open():
        await backplane.ensure_epoch("epoch", ReadTo())
        await backplane.append("epoch", ReadTo(), "node", "2026-11-28T00:00:00", requests)  # 1-3
        await trio.sleep(1.1)  # the next batch gets a mark of its own
        await backplane.append("epoch", ReadTo(), "node", "2026-11-28T00:00:01", requests[:2])
        assert await backplane.trim() == 0  # the first mark is only just a second old
        await trio.sleep(1.1)  # now the second one is too
        removed = await backplane.trim()
        kept = [record.seq for record in await backplane.newest(10)]
    if max_age is None:  # never trimmed by age
        assert (removed, kept) == (0, [1, 2, 3, 4, 5])
    else:
        assert (removed, kept) == (3, [4, 5])


async def test_a_log_behind_what_a_node_read_starts_a_new_epoch(redis: RedisServer) -> None:
    """Redis back from an older snapshot keeps the epoch but not the newest entries: a node that
    read past its counter starts a new log instead of handing out seqs clients have had."""
    backplane = RedisBackplane(redis.url, "t:", max_length=1000, max_age=None)
    requests = [AppendRequest(key, "client", f"m{key}") for key in range(1, 4)]
    async with backplane.open():
        epoch = await backplane.ensure_epoch("e1", ReadTo())
        assert await backplane.append("e2", ReadTo(epoch, 0), "n", "t", requests) == "e1"
        # Read to seq 3 of e1: the log has it, nothing changes.
        assert await backplane.ensure_epoch("e3", ReadTo("e1", 3)) == "e1"
        # Read to seq 5 of e1, which this log never had (it lost them): a new log.
        assert await backplane.ensure_epoch("e4", ReadTo("e1", 5)) == "e4"
        assert await backplane.newest(10) == []
        # Read far into another epoch: not this log's business (that node syncs and learns).
        assert await backplane.append("e5", ReadTo("e1", 99), "n", "t", requests[:1]) == "e4"
        assert [record.seq for record in await backplane.newest(10)] == [1]
        assert (await backplane.report("n", 0, 6.0))[1] == "e4"


async def test_servers_on_a_redis_cluster(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    """Three masters; the log's slot is not on the node the URL names, so the client must
    find it."""
    async with AsyncExitStack() as stack:
        cluster = await stack.enter_async_context(open_redis_cluster(tmp_path))
        assert await cluster.owner("trio-broadcast:{log}:stream") != 0
        a, b = await start_servers(stack, server_factory, 2, cluster.url, redis_cluster=True)
        publisher = await stack.enter_async_context(connect(a.ws_url))
        listener = await stack.enter_async_context(connect(b.ws_url))
        welcome = await receive_type(listener, "welcome")
        await receive_type(publisher, "welcome")
        for number in range(5):
            await publish(publisher, f"m{number}")
        acks = [await receive_type(publisher, "ack") for _ in range(5)]
        seen = [await receive_type(listener, "message") for _ in range(5)]
        assert [ack["seq"] for ack in acks] == [frame["seq"] for frame in seen] == [1, 2, 3, 4, 5]
        async with connect(a.ws_url + f"?since=2&epoch={welcome['epoch']}") as resumed:
            await receive_type(resumed, "welcome")
            replay = [await receive_type(resumed, "message") for _ in range(3)]
            recovered = await receive_type(resumed, "recovered")
        assert [frame["message"] for frame in replay] == ["m2", "m3", "m4"]
        assert recovered["complete"] is True
