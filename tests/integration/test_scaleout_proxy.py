"""compose.yaml's scale-out, run for real without Docker: Debian's nginx with the file compose
mounts (deploy/nginx.conf) in front of two ``trio-broadcast serve`` processes on one
redis-server. The UI and the routes answer on the proxy's one port, clients land on both
servers, a publish on one reaches the other's clients once with one seq, and a server stopped
with SIGTERM hands its clients (1001) through the proxy to the other, where they resume with
nothing missed."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from nginx_server import open_nginx
from redis_server import RedisServer, open_redis_server
from support import (
    JSON,
    ServerProcess,
    connect,
    next_of,
    publish,
    read_until_closed,
    receive_type,
    server_process,
)
from trio_websocket import WebSocketConnection, wrap_client_stream

from trio_broadcast.client.session import (
    Client,
    Connected,
    Disconnected,
    Event,
    Gap,
    Message,
    ReconnectPolicy,
    open_client,
)

pytestmark = [
    pytest.mark.slow,  # three server processes
    pytest.mark.skipif(
        not Path("/usr/bin/redis-server").exists(), reason="needs redis-server (system-deps)"
    ),
]

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
PROXY_ADDRESS = "127.0.0.1"  # where nginx connects to the servers from: their trusted proxy
CLIENT_ADDRESS = "127.0.0.3"  # a client's own address, for the servers to log
FAST = ReconnectPolicy(initial=0.02, cap=0.1, stable_after=60.0)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def local_config(port: int, directory: Path, upstreams: Sequence[int]) -> str:
    """deploy/nginx.conf with the addresses and files of this test in place of compose's.

    Each replacement must find its text exactly once, so that the file and this test cannot
    drift apart: change one, and the test fails until the other follows.
    """
    first, second = upstreams
    # Debian's nginx keeps temporary files in /var/lib/nginx; the test's go to its folder.
    temp_paths = "".join(f"    {name}_temp_path {directory}/{name};\n" for name in TEMP_PATHS)
    replacements = {
        "pid /run/nginx.pid;": f"pid {directory}/nginx.pid;",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "server server-1:8000 ": f"server 127.0.0.1:{first} ",
        "server server-2:8000 ": f"server 127.0.0.1:{second} ",
        "http {\n": "http {\n" + temp_paths,
    }
    text = NGINX_CONF.read_text()
    for old, new in replacements.items():
        found = text.count(old)
        assert found == 1, f"{NGINX_CONF.name} has {old!r} {found} times, not once: sync the test"
        text = text.replace(old, new)
    return text


@attrs.frozen
class Cluster:
    """Two servers on one Redis behind nginx."""

    replicas: list[ServerProcess]  # server-1, server-2
    port: int  # the proxy's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events"

    def replica_of(self, client_id: str) -> int:
        """Which replica (0 or 1) logged the connection of ``client_id``."""
        found = [
            index
            for index, replica in enumerate(self.replicas)
            for entry in log_entries(replica)
            if entry.get("event") == "connected" and entry.get("client_id") == client_id
        ]
        assert len(found) == 1, (client_id, found)
        return found[0]


def log_entries(replica: ServerProcess) -> list[JSON]:
    """Its log (``--log-json``: one object per line; the line is written before the client's
    welcome frame, so a client that has its welcome is in it)."""
    return [json.loads(line) for line in replica.log().splitlines() if line.startswith("{")]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    (tmp_path / "redis").mkdir()
    (tmp_path / "nginx").mkdir()
    async with AsyncExitStack() as stack:
        redis: RedisServer = await stack.enter_async_context(open_redis_server(tmp_path / "redis"))
        replicas = [
            await stack.enter_async_context(
                server_process(
                    "--redis-url", redis.url, "--trusted-proxies", PROXY_ADDRESS, "--log-json"
                )
            )
            for _ in range(2)
        ]
        ports = [replica.port for replica in replicas]
        directory = tmp_path / "nginx"
        port = await stack.enter_async_context(
            open_nginx(
                lambda port: local_config(port, directory, ports),
                directory,
                extra_args=("-g", "daemon off;"),  # as the nginx image runs it
            )
        )
        yield Cluster(replicas, port)
        for replica in replicas:
            assert "Traceback" not in replica.log(), replica.log()


async def connect_from(nursery: trio.Nursery, address: str, port: int) -> WebSocketConnection:
    """A WebSocket to the proxy from ``address`` (a loopback address of the test's choice)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=address)
    return await wrap_client_stream(nursery, stream, f"127.0.0.1:{port}", "/ws/events")


async def test_the_ui_health_and_websockets_on_both_servers_through_the_one_port(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(base_url=cluster.url) as http:
        page = await http.get("/")
        health = await http.get("/health")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert health.status_code == 200
    assert (health.json()["status"], health.json()["backplane"]) == ("healthy", "up")

    async with trio.open_nursery() as nursery, connect(cluster.ws_url) as second:
        first = await connect_from(nursery, CLIENT_ADDRESS, cluster.port)
        welcomes = [await receive_type(ws, "welcome") for ws in (first, second)]
        # least_conn: the second client goes to the server without one.
        placed = [cluster.replica_of(welcome["client_id"]) for welcome in welcomes]
        assert sorted(placed) == [0, 1]
        assert welcomes[0]["epoch"] == welcomes[1]["epoch"]  # one log, one epoch

        # Across the servers, once each way, one seq: each side's next frame after the
        # exchange is the following seq, so nothing came twice.
        await publish(first, "from one server")
        ack = await receive_type(first, "ack")
        message = await receive_type(second, "message")
        assert (message["seq"], message["message"]) == (ack["seq"], "from one server")
        assert message["sender"] == welcomes[0]["client_id"]
        await publish(second, "and back")
        assert (await receive_type(second, "ack"))["seq"] == ack["seq"] + 1
        back = await receive_type(first, "message")
        assert (back["seq"], back["message"]) == (ack["seq"] + 1, "and back")
        await first.aclose()

    # X-Forwarded-For from nginx is believed (the proxy is trusted): the client's own address.
    (connected,) = [
        entry
        for entry in log_entries(cluster.replicas[placed[0]])
        if entry.get("client_id") == welcomes[0]["client_id"] and entry["event"] == "connected"
    ]
    assert connected["peer"] == CLIENT_ADDRESS


async def events_until(client: Client, text: str, seen: list[Event]) -> None:
    """Every event into ``seen`` until the message ``text``."""
    async for event in client:
        seen.append(event)
        if isinstance(event, Message) and event.text == text:
            return
    raise AssertionError("the client stopped")


async def test_a_server_stopped_with_sigterm_hands_its_clients_to_the_other_with_nothing_missed(
    cluster: Cluster,
) -> None:
    async with AsyncExitStack() as stack:
        raw = await stack.enter_async_context(connect(cluster.ws_url))
        welcome = await receive_type(raw, "welcome")
        stopped = cluster.replica_of(welcome["client_id"])
        clients: list[Client] = []
        placed: list[int] = []
        for _ in range(3):
            client = await stack.enter_async_context(open_client(cluster.ws_url, policy=FAST))
            connected = await next_of(client, Connected)
            clients.append(client)
            placed.append(cluster.replica_of(connected.client_id))
        victims = [client for client, at in zip(clients, placed, strict=True) if at == stopped]
        survivors = [client for client, at in zip(clients, placed, strict=True) if at != stopped]
        # least_conn: two clients on each server, so one of these three is with the raw one.
        assert len(victims) == 1, placed
        assert len(survivors) == 2, placed
        publisher = survivors[0]

        before = await publisher.publish("before")
        assert (await receive_type(raw, "message"))["seq"] == before.seq
        for victim in victims:
            assert (await next_of(victim, Message)).seq == before.seq

        server = cluster.replicas[stopped]
        server.process.send_signal(signal.SIGTERM)
        assert await read_until_closed(raw) == ([], 1001)
        seen: dict[int, list[Event]] = {id(victim): [] for victim in victims}
        for victim in victims:
            dropped = await next_of(victim, Disconnected, seen[id(victim)])
            assert dropped.code == 1001
        assert await server.process.wait() == 0

        acks = [await publisher.publish(f"meanwhile-{number}") for number in range(3)]
        assert [ack.seq for ack in acks] == [before.seq + 1, before.seq + 2, before.seq + 3]

        # The raw client resumes by hand through the proxy: on the other server, all of it.
        other = 1 - stopped
        query = f"?since={before.seq}&epoch={welcome['epoch']}"
        async with connect(cluster.ws_url + query) as again:
            resumed = await receive_type(again, "welcome")
            assert resumed["epoch"] == welcome["epoch"]
            assert cluster.replica_of(resumed["client_id"]) == other
            replay = [await receive_type(again, "message") for _ in range(3)]
            recovered = await receive_type(again, "recovered")
        assert [frame["seq"] for frame in replay] == [ack.seq for ack in acks]
        assert [frame["message"] for frame in replay] == [f"meanwhile-{n}" for n in range(3)]
        assert recovered["complete"] is True

        # The library's clients did so by themselves.
        for victim in victims:
            events = seen[id(victim)]
            await events_until(victim, "meanwhile-2", events)
            reconnected = [event for event in events if isinstance(event, Connected)]
            assert [event.resumed for event in reconnected] == [True]
            assert cluster.replica_of(reconnected[0].client_id) == other
            messages = [event for event in events if isinstance(event, Message)]
            assert [m.seq for m in messages] == [ack.seq for ack in acks]
            assert not [event for event in events if isinstance(event, Gap)]
            statistics = victim.statistics()
            assert (statistics.gaps, statistics.duplicates) == (0, 0)

        async with httpx.AsyncClient() as http:
            health = (await http.get(cluster.replicas[other].url + "/health")).json()
        assert health["connections"] == len(clients)  # every library client, now on one server
