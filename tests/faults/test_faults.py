"""Fault injection against a real server: stalled readers, zero windows, resets, shutdown."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing
from conftest import RunningServer
from support import (
    RawClient,
    close_code,
    connect,
    publish,
    read_until_closed,
    receive_type,
    server_process,
    unbatch,
)

from trio_broadcast.server import _hypercorn, connection

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
BIG = "x" * 16_000  # large messages fill socket buffers quickly


class Listener:
    """A healthy trio-websocket client that records every seq it receives."""

    def __init__(self) -> None:
        self.seqs: list[int] = []  # every seq received, in arrival order
        self.ready = trio.Event()  # set after the welcome
        self._progress = trio.Event()  # set and replaced on every message

    async def reached(self, seq: int) -> None:
        """Wait until this listener has received ``seq``."""
        while not self.seqs or self.seqs[-1] < seq:
            await self._progress.wait()

    async def run(self, url: str) -> None:
        """Receive until cancelled."""
        async with connect(url) as ws:
            await receive_type(ws, "welcome")
            self.ready.set()
            while True:
                self.seqs.append((await receive_type(ws, "message"))["seq"])
                self._progress.set()
                self._progress = trio.Event()


async def test_stalled_reader_is_evicted_with_4008_while_healthy_clients_get_everything(
    server_factory: ServerFactory,
) -> None:
    listeners = [Listener() for _ in range(20)]
    async with server_factory(outbox_messages=8) as server:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(listener.run, server.ws_url)
                await listener.ready.wait()
            stalled = await RawClient.connect(server.info.host, server.info.port)
            await server.wait_for_connections(21)
            async with connect(server.ws_url) as sender:
                await receive_type(sender, "welcome")
                sent = 0
                while not server.app.hub.statistics().evictions and sent < 5000:
                    await publish(sender, BIG)
                    sent = (await receive_type(sender, "ack"))["seq"]
                    # Lockstep, so only the stalled client can fall behind by eight messages.
                    for listener in listeners:
                        await listener.reached(sent)
                assert server.app.hub.statistics().evictions == {"slow_consumer": 1}
                for _ in range(5):  # and life goes on
                    await publish(sender, "after")
                    sent = (await receive_type(sender, "ack"))["seq"]
            final_seq = sent
            for listener in listeners:
                await listener.reached(final_seq)
            nursery.cancel_scope.cancel()
        # The stalled client, once it reads, finds its backlog cut short by a 4008 close.
        assert await stalled.read_until_closed() == 4008
        stalled.close()
        got = [json.loads(m) for m in stalled.messages]
        assert got[0]["type"] == "welcome"
        seen = [m["seq"] for m in got[1:]]
        assert seen == list(range(1, len(seen) + 1))
        assert len(seen) < final_seq
        # It resumes where it stopped and misses nothing.
        epoch = got[0]["epoch"]
        async with connect(f"{server.ws_url}?since={len(seen)}&epoch={epoch}&batch=1") as again:
            await receive_type(again, "welcome")
            replayed: list[int] = []
            while True:
                frame = json.loads(await again.get_message())
                if frame["type"] == "recovered":
                    break
                replayed += [e["seq"] for e in frame.get("events", [frame])]
            assert frame["complete"] is True
            assert replayed == list(range(len(seen) + 1, final_seq + 1))
    for listener in listeners:
        assert listener.seqs == list(range(1, final_seq + 1))


async def test_frames_cut_by_a_full_socket_reach_a_batching_client_whole_and_in_order(
    server: RunningServer,
) -> None:
    # The broadcaster's pass writes frames without waiting. A client that stopped reading fills
    # its socket, so a frame is cut where the buffer ends: its tail must still go out first,
    # before any other frame, and nothing may be lost or repeated.
    slow = await RawClient.connect(server.info.host, server.info.port, "?batch=1")
    texts = [f"{n:04d}" + "y" * 3000 for n in range(300)]
    async with connect(server.ws_url) as sender:
        await receive_type(sender, "welcome")
        for text in texts:  # no waiting for acks: events pile up and go out in batches
            await publish(sender, text)
        for _ in texts:
            await receive_type(sender, "ack")
        assert server.app.hub.statistics().evictions == {}
        assert json.loads((await slow.read_messages(1))[0])["type"] == "welcome"
        events: list[dict[str, object]] = []
        batches, seen = 0, 1
        while len(events) < len(texts):
            await slow.read_messages(seen + 1)
            for message in slow.messages[seen:]:
                frame = json.loads(message)
                batches += frame["type"] == "batch"
                events += unbatch(frame)
            seen = len(slow.messages)
        slow.close()
    assert [e["seq"] for e in events] == list(range(1, len(texts) + 1))
    assert [e["message"] for e in events] == texts
    assert batches > 0


async def test_zero_window_client_is_freed_within_the_write_timeout(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(outbox_messages=8, write_timeout=1.0) as server:
        stalled = await RawClient.connect(server.info.host, server.info.port)
        async with connect(server.ws_url) as sender:
            await receive_type(sender, "welcome")
            await server.wait_for_connections(2)
            while not server.app.hub.statistics().evictions:
                await publish(sender, BIG)
                await receive_type(sender, "ack")
            # Evicted from the hub at once; its writer is stuck in Hypercorn's shielded send
            # until the kernel gives up on the unacknowledged data (TCP_USER_TIMEOUT).
            assert server.app.hub.connection_count == 1
            await server.wait_for_sessions(1)
        stalled.close()


async def test_shutdown_completes_with_a_zero_window_client(server_factory: ServerFactory) -> None:
    async with server_factory(
        write_timeout=1.0, shutdown_timeout=1.0, outbox_messages=4096, outbox_bytes=1 << 26
    ) as server:
        stalled = await RawClient.connect(server.info.host, server.info.port)
        async with connect(server.ws_url) as sender:
            await receive_type(sender, "welcome")
            await server.wait_for_connections(2)
            # Until the socket's buffers are full and the stalled client's writer is blocked
            # with more waiting behind it; far from evicting it.
            for _ in range(4000):
                await publish(sender, BIG)
                await receive_type(sender, "ack")
                if server.app.hub.statistics().outbox_depth_max > 0:
                    break
            assert server.app.hub.statistics().outbox_depth_max > 0
            server.shutdown()
            _, code = await read_until_closed(sender)
            assert code == 1001
        await server.stopped.wait()
        assert server.app.hub.open_sessions == 0
        stalled.close()


# Victims written by the broadcaster's pass or by their own writers, plain and batching.
@pytest.mark.parametrize("query", ["", "?batch=1"])
async def test_abrupt_resets_mid_broadcast_leave_the_count_right(
    server_factory: ServerFactory, query: str
) -> None:
    listeners = [Listener() for _ in range(5)]
    async with server_factory() as server:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(listener.run, server.ws_url)
                await listener.ready.wait()
            victims = [
                await RawClient.connect(server.info.host, server.info.port, query, rcvbuf=65536)
                for _ in range(10)
            ]
            await server.wait_for_connections(15)
            async with connect(server.ws_url) as sender:
                await receive_type(sender, "welcome")
                for n in range(200):
                    await publish(sender, f"m{n}")
                    if n % 20 == 10:
                        victims.pop().reset()
                for _ in range(200):
                    await receive_type(sender, "ack")
                assert not victims
                for listener in listeners:
                    await listener.reached(200)
                await server.wait_for_connections(6)
                await server.wait_for_sessions(6)
            nursery.cancel_scope.cancel()
        await server.wait_for_sessions(0)
    for listener in listeners:
        assert listener.seqs == list(range(1, 201))
    assert server.app.hub.statistics().evictions == {}


@pytest.mark.parametrize("where", ["reading", "greeting"])
async def test_an_error_inside_one_connection_closes_it_with_1011_and_nothing_else(
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    # A bug that raises while a frame is taken (in Hypercorn's read loop for a detached
    # connection, in the reader task otherwise) or while a writer greets must end that
    # connection only: the server, its other clients and the counts carry on.
    if where == "reading":
        take = connection.Session.take

        async def broken_take(self: connection.Session, data: str | bytes | None) -> bool:
            if data == '{"message": "boom"}':
                raise RuntimeError("injected")
            return await take(self, data)

        monkeypatch.setattr(connection.Session, "take", broken_take)
    async with connect(server.ws_url) as healthy:
        await receive_type(healthy, "welcome")
        if where == "greeting":  # (the healthy client has been greeted already)

            async def broken_greet(*args: object) -> None:
                raise RuntimeError("injected")

            monkeypatch.setattr(connection, "_greet", broken_greet)
        victim = await RawClient.connect(server.info.host, server.info.port)
        if where == "reading":
            await victim.read_messages(1)  # its welcome
            await victim.send_text('{"message": "boom"}')
        assert await victim.read_until_closed() == 1011
        victim.close()
        await publish(healthy, "still here")
        assert (await receive_type(healthy, "ack"))["seq"] == 1
        await server.wait_for_connections(1)
        await server.wait_for_sessions(1)
    await server.wait_for_sessions(0)
    caplog.clear()  # the injected error was logged (by Hypercorn, or as connection_failed)


async def test_a_flooder_closed_with_1008_gets_its_tcp_connection_closed(
    server_factory: ServerFactory,
) -> None:
    # The client keeps sending long after its close: Hypercorn must still read its close reply.
    async with server_factory(publish_rate=1.0, publish_burst=2, rate_limit_strikes=3) as server:
        flooder = await RawClient.connect(server.info.host, server.info.port, rcvbuf=65536)
        try:
            for n in range(300):
                await flooder.send_text(json.dumps({"message": f"m{n}"}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close (and reset) the connection while we still send
        await flooder.read_until_closed()
        await flooder.wait_for_eof()
        flooder.close()
        await server.wait_for_sessions(0)
        assert server.app.hub.statistics().evictions == {"rate_abuse": 1}


async def test_a_client_still_sending_when_closed_reads_its_close_code(
    server_factory: ServerFactory,
) -> None:
    # The server keeps reading (and discarding) after its close frame, up to CLOSE_TIMEOUT, so
    # a client in the middle of sending is not reset: a reset can destroy the close frame.
    async with server_factory(publish_rate=1.0, publish_burst=2, rate_limit_strikes=3) as server:
        client = await RawClient.connect(server.info.host, server.info.port, rcvbuf=65536)
        for n in range(100):  # no BrokenPipe/ConnectionReset: the socket is not reset
            await client.send_text(json.dumps({"message": f"m{n}"}))
        assert await client.read_until_closed() == 1008
        client.close()
        await server.wait_for_sessions(0)


async def test_a_closed_connection_does_not_wait_for_its_next_ping(
    server_factory: ServerFactory,
) -> None:
    # Pings and grace far beyond the test's deadline: shutdown can only finish in time if the
    # closed connection's pinger stopped with it.
    async with server_factory(ping_interval=1000.0, shutdown_timeout=1000.0) as server:
        before = task_names()
        async with connect(server.ws_url) as ws:
            await receive_type(ws, "welcome")
            await trio.testing.wait_all_tasks_blocked()
            pingers = {name for name in task_names() - before if "_send_pings" in name}
            # Hypercorn's pinger per connection, or none: the hub pings clients it writes (S3).
            assert len(pingers) == (0 if _hypercorn._shortcuts_apply() else 1)
        await server.wait_for_sessions(0)
        await trio.testing.wait_all_tasks_blocked()
        assert not {name for name in task_names() - before if "_send_pings" in name}
        server.shutdown()
        await server.stopped.wait()


async def test_a_connected_client_is_pinged_every_ping_interval(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(ping_interval=0.3, idle_timeout=30.0) as server:
        client = await RawClient.connect(server.info.host, server.info.port)
        await client.read_messages(1)
        with trio.fail_after(10):
            while client.pings < 2:
                assert await client.read_some()
        assert client.messages[0].startswith('{"type":"welcome"')
        client.close()


def task_names() -> set[str]:
    """The names of every task now running (with their ids: two pingers are two names)."""
    names: set[str] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        names.add(f"{task.name}#{id(task)}")
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names


async def test_a_client_that_answers_no_ping_is_dropped_after_idle_timeout_and_others_stay(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(ping_interval=0.5, idle_timeout=1.5) as server:
        async with connect(server.ws_url + "?batch=1") as alive:  # answers pings by itself
            await receive_type(alive, "welcome")
            connected = trio.current_time()
            # Two silent clients in turn, each dropped a whole idle_timeout after it came:
            # meanwhile ``alive`` sent nothing but its pongs.
            for _ in range(2):
                silent = await RawClient.connect(server.info.host, server.info.port, "?batch=1")
                await server.wait_for_connections(2)
                with trio.fail_after(10):
                    await silent.read_until_closed()  # reads the pings, never answers them
                    await server.wait_for_connections(1)
                silent.close()
            assert trio.current_time() - connected >= 2 * 1.5
            async with connect(server.ws_url) as publisher:
                await receive_type(publisher, "welcome")
                await publish(publisher, "still here")
                message = await receive_type(alive, "message")
            assert message["message"] == "still here"
        await server.wait_for_sessions(0)


@pytest.mark.slow
async def test_sigterm_closes_200_clients_with_1001_and_exits() -> None:
    async with server_process("--publish-rate", "off", log_level="warning") as server:
        codes: list[int | None] = []
        connected = trio.Semaphore(0)

        async def client() -> None:
            async with connect(server.ws_url) as ws:
                await receive_type(ws, "welcome")
                connected.release()
                _, code = await read_until_closed(ws)
                codes.append(code)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(client)
            for _ in range(200):
                await connected.acquire()
            server.process.send_signal(signal.SIGTERM)
        assert codes == [1001] * 200
        assert await server.process.wait() == 0


_ = close_code
