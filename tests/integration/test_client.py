"""The client library against a real server: publish/ack, listen, reconnect after a restart,
resume after a drop, gaps, eviction, cancellation.

Faults are injected with :class:`Proxy`, a TCP relay between client and server that can drop
every connection at once (the client sees no close frame) and hold new ones (the client stays
disconnected for as long as the test needs).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from conftest import RunningServer
from support import next_of
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from trio_broadcast.client.session import (
    Client,
    Connected,
    ConnectError,
    ConnectFailed,
    ConnectionLostError,
    Disconnected,
    Event,
    Gap,
    InvalidURLError,
    Message,
    NotConnectedError,
    OriginRejectedError,
    ReconnectPolicy,
    open_client,
)

TIMEOUT = 10  # seconds for a whole test
FAST = ReconnectPolicy(initial=0.02, cap=0.1, stable_after=60.0)  # quick, deterministic enough


class Proxy:
    """A TCP relay to ``upstream_port``; :meth:`drop` cuts every connection, :meth:`freeze`
    silences them (nothing forwarded, nothing closed), :meth:`hold` makes new connections wait
    (their handshake hangs) until :meth:`release`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0  # where the proxy listens, once started
        self.accepted = 0  # connections accepted so far
        self._gate = trio.Event()  # set: connections go through
        self._gate.set()
        self._scopes: set[trio.CancelScope] = set()  # one per relayed connection
        self._frozen: set[trio.CancelScope] = set()  # relays that forward nothing any more
        self._arrived = trio.Event()  # replaced on every accepted connection

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._relay, listeners)
            task_status.started()

    def drop(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def freeze(self) -> None:
        self._frozen |= self._scopes

    def hold(self) -> None:
        self._gate = trio.Event()

    def release(self) -> None:
        self._gate.set()

    async def wait_accepted(self, count: int) -> None:
        while self.accepted < count:
            await self._arrived.wait()

    async def _relay(self, downstream: trio.SocketStream) -> None:
        self.accepted += 1
        self._arrived.set()
        self._arrived = trio.Event()
        async with downstream:
            await self._gate.wait()
            upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
            async with upstream:
                with trio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._pump, downstream, upstream, scope)
                            nursery.start_soon(self._pump, upstream, downstream, scope)
                    finally:
                        self._scopes.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            async for data in source:
                if scope in self._frozen:
                    continue  # swallowed: the peer hears nothing, and no close either
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


@contextlib.asynccontextmanager
async def proxy_to(server: RunningServer) -> AsyncIterator[Proxy]:
    proxy = Proxy(server.info.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        yield proxy
        nursery.cancel_scope.cancel()


async def messages_until(client: Client, last_text: str, seen: list[Event]) -> list[Message]:
    """Messages up to the one whose text is ``last_text``; every event goes to ``seen``."""
    messages = []
    async for event in client:
        seen.append(event)
        if isinstance(event, Message):
            messages.append(event)
            if event.text == last_text:
                return messages
    raise AssertionError("the client stopped")


def client_tasks() -> list[str]:
    """Names of every live task the client started (trio-websocket's readers are children of
    these, so they cannot outlive them)."""
    names: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return [name for name in names if name.startswith("trio_broadcast.client.session")]


# -- basics ----------------------------------------------------------------------------------


async def test_publish_returns_the_ack_and_others_receive_the_message(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(server.ws_url) as alice, open_client(server.url) as bob:
            welcome = await next_of(bob, Connected)
            assert welcome.batch
            ack = await alice.publish("hello", id="greeting")
            assert ack.id == "greeting"
            assert ack.epoch == alice.epoch
            assert ack.timestamp is not None
            message = await next_of(bob, Message)
            assert (message.seq, message.text, message.sender) == (
                ack.seq,
                "hello",
                alice.client_id,
            )
            assert not message.replayed
            assert alice.last_seq == bob.last_seq == ack.seq


async def test_batched_frames_can_be_turned_off_and_everything_still_arrives(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_client(server.ws_url, receive=False) as publisher,
            open_client(server.ws_url, batch=False) as plain,
            open_client(server.ws_url) as batched,
        ):
            assert not (await next_of(plain, Connected)).batch
            assert (await next_of(batched, Connected)).batch
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(publisher.publish, f"m{i}")
            for client in (plain, batched):
                got: list[Message] = []
                while len(got) < 100:
                    got.append(await next_of(client, Message))
                assert [m.seq for m in got] == list(range(1, 101))


# trio-websocket leaves its client socket to the garbage collector when a handshake is rejected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_refused_connection_bad_url_and_rejected_origin_raise_clear_errors(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(InvalidURLError):
            async with open_client("ftp://127.0.0.1/"):
                pass
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nothing listens there now
        with pytest.raises(ConnectError, match="refused"):
            async with open_client(f"ws://127.0.0.1:{port}/ws/events"):
                pass
        with pytest.raises(OriginRejectedError) as rejected:
            async with open_client(server.ws_url, origin="http://evil.example"):
                pass
        assert rejected.value.status == 403


async def test_exception_in_the_block_propagates_unwrapped(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(KeyError):
        async with open_client(server.ws_url):
            raise KeyError("mine")


# -- reconnect and resume --------------------------------------------------------------------


async def test_reconnect_after_server_restart_reports_a_gap_then_is_live_again(
    server_factory: Callable[..., Any],
) -> None:
    async def run_server(**settings: Any) -> RunningServer:
        """A server in the test's nursery until it is shut down."""

        async def run(task_status: trio.TaskStatus[RunningServer]) -> None:
            async with server_factory(**settings) as running:
                task_status.started(running)
                await running.stopped.wait()

        started: RunningServer = await servers.start(run)
        return started

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as servers:
            first = await run_server()
            async with open_client(first.ws_url, policy=FAST) as listener:
                async with open_client(first.ws_url, receive=False) as publisher:
                    await publisher.publish("before")
                assert (await next_of(listener, Message)).text == "before"
                old_epoch = listener.epoch

                first.shutdown()
                await first.stopped.wait()
                seen: list[Event] = []
                dropped = await next_of(listener, Disconnected, seen)
                assert dropped.code == 1001
                assert dropped.reconnect_in is not None

                second = await run_server(port=first.info.port)
                connected = await next_of(listener, Connected, seen)
                assert connected.resumed
                assert connected.epoch != old_epoch
                gap = await next_of(listener, Gap, seen)
                assert gap.reason == "epoch_mismatch"
                assert (gap.previous_epoch, gap.since, gap.count) == (old_epoch, 1, None)

                async with open_client(second.ws_url, receive=False) as publisher:
                    ack = await publisher.publish("after")
                message = await next_of(listener, Message, seen)
                assert (message.text, message.seq, message.epoch) == ("after", ack.seq, gap.epoch)
                assert all(isinstance(e, ConnectFailed | Disconnected) for e in seen)
            second.shutdown()


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(
    server: RunningServer,
) -> None:
    count = 300
    with trio.fail_after(TIMEOUT):
        async with (
            proxy_to(server) as proxy,
            open_client(proxy.url, policy=FAST) as listener,
            open_client(server.ws_url, receive=False) as publisher,
        ):

            async def publish_all() -> None:
                for i in range(1, count + 1):
                    await publisher.publish(f"m{i}")

            seen: list[Event] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_all)
                first_part = await messages_until(listener, "m50", seen)
                proxy.drop()  # mid-stream, without a close frame
                rest = await messages_until(listener, f"m{count}", seen)
            texts = [m.text for m in first_part + rest]
            assert texts == [f"m{i}" for i in range(1, count + 1)]
            assert [m.seq for m in first_part + rest] == list(range(1, count + 1))
            assert not [e for e in seen if isinstance(e, Gap)]
            assert [e.code for e in seen if isinstance(e, Disconnected)] == [1006]
            resumed = [e for e in seen if isinstance(e, Connected)]
            assert [c.resumed for c in resumed] == [False, True]
            assert listener.statistics().gaps == 0


async def test_gap_event_when_the_history_no_longer_holds_what_was_missed(
    server_factory: Callable[..., Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            server_factory(history_size=3) as server,
            proxy_to(server) as proxy,
            open_client(proxy.url, policy=FAST) as listener,
            open_client(server.ws_url, receive=False) as publisher,
        ):
            await publisher.publish("seen")
            assert (await next_of(listener, Message)).seq == 1
            proxy.hold()
            proxy.drop()
            await next_of(listener, Disconnected)
            for i in range(2, 11):
                await publisher.publish(f"m{i}")
            proxy.release()
            seen: list[Event] = []
            gap = await next_of(listener, Gap, seen)
            assert gap.reason == "history_expired"
            assert (gap.since, gap.until, gap.count) == (1, 7, 6)
            rest = [await next_of(listener, Message) for _ in range(3)]
            assert [(m.seq, m.text, m.replayed) for m in rest] == [
                (8, "m8", True),
                (9, "m9", True),
                (10, "m10", True),
            ]


async def test_resume_from_a_given_seq_without_epoch_uses_the_current_epoch(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(server.ws_url, receive=False) as publisher:
            for i in range(1, 6):
                await publisher.publish(f"m{i}")
        async with open_client(server.ws_url, since=2) as late:
            got = [await next_of(late, Message) for _ in range(3)]
            assert [(m.seq, m.replayed) for m in got] == [(3, True), (4, True), (5, True)]


async def test_slow_consumer_is_evicted_then_resumes_without_loss(
    server_factory: Callable[..., Any],
) -> None:
    payload = "x" * 30_000
    with trio.fail_after(30):
        async with (
            server_factory(outbox_messages=8, history_size=10_000, write_timeout=None) as server,
            open_client(server.ws_url, policy=FAST, event_buffer=1) as stalled,
            open_client(server.ws_url, receive=False) as publisher,
        ):
            sent = 0
            hub = server.app.hub
            # The stalled client is not iterated: its buffers, then the socket's, then its
            # outbox on the server fill up, and the server evicts it.
            while hub.statistics().evictions.get("slow_consumer", 0) == 0:
                sent += 1
                await publisher.publish(f"{sent}:{payload}")
            for _ in range(5):  # a few more, only in the history now
                sent += 1
                await publisher.publish(f"{sent}:{payload}")

            seen: list[Event] = []
            messages = await messages_until(stalled, f"{sent}:{payload}", seen)
            assert [int(m.text.split(":")[0]) for m in messages] == list(range(1, sent + 1))
            assert [m.seq for m in messages] == list(range(1, sent + 1))
            assert [e.code for e in seen if isinstance(e, Disconnected)] == [4008]
            assert not [e for e in seen if isinstance(e, Gap)]
            assert any(m.replayed for m in messages)


async def test_without_reconnect_a_drop_ends_iteration_with_connection_lost(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_client(server.ws_url, reconnect=False) as client:
            await next_of(client, Connected)
            server.shutdown()
            with pytest.raises(ConnectionLostError) as lost:
                await next_of(client, Message)
            assert lost.value.code == 1001


async def test_a_silent_connection_is_detected_by_keepalive_and_replaced(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            proxy_to(server) as proxy,
            open_client(proxy.url, policy=FAST, keepalive=0.5) as client,
            open_client(server.ws_url, receive=False) as publisher,
        ):
            await next_of(client, Connected)
            proxy.freeze()  # the path goes silent: no data, no FIN, no RST
            dropped = await next_of(client, Disconnected)
            assert "no answer to a ping" in dropped.reason
            assert (await next_of(client, Connected)).resumed
            await publisher.publish("still here")
            assert (await next_of(client, Message)).text == "still here"


# -- publishing while disconnected -----------------------------------------------------------


async def test_publish_while_disconnected_raises_or_waits_for_the_reconnect(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            proxy_to(server) as proxy,
            open_client(proxy.url, policy=FAST, publish_wait=0) as impatient,
            open_client(proxy.url, policy=FAST, publish_wait=None) as patient,
        ):
            proxy.hold()
            proxy.drop()
            await next_of(impatient, Disconnected)
            await next_of(patient, Disconnected)
            with pytest.raises(NotConnectedError):
                await impatient.publish("now or never")

            result: list[int] = []

            async def publish_later() -> None:
                result.append((await patient.publish("eventually")).seq)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_later)
                await proxy.wait_accepted(4)  # both clients are knocking again
                proxy.release()
            assert result == [1]
            assert (await next_of(impatient, Message)).text == "eventually"


async def test_publish_with_a_bounded_wait_gives_up_with_not_connected(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            proxy_to(server) as proxy,
            open_client(proxy.url, policy=FAST, publish_wait=0.2) as client,
        ):
            proxy.hold()
            proxy.drop()
            await next_of(client, Disconnected)
            with pytest.raises(NotConnectedError, match=r"0\.2 s"):
                await client.publish("lost cause")
            assert client.statistics().acks == 0


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_the_block_closes_with_1000_and_leaves_no_task() -> None:
    """Against a bare WebSocket server that records the close code it receives."""
    codes: list[int | None] = []
    closed_seen = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(
            '{"type":"welcome","client_id":"c1","seq":0,"epoch":"e","connections":1,'
            '"server":"fake","batch":true,"limits":{}}'
        )
        try:
            await ws.get_message()
        except ConnectionClosed as closed:
            codes.append(closed.reason.code if closed.reason else None)
            closed_seen.set()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            fake = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            url = f"ws://127.0.0.1:{fake.port}/ws/events"
            with trio.CancelScope() as scope:
                async with open_client(url) as client:
                    await next_of(client, Connected)
                    assert client_tasks()
                    scope.cancel()
                    await trio.sleep_forever()  # cancelled right here
            assert scope.cancelled_caught
            assert client_tasks() == []
            await closed_seen.wait()
            assert codes == [1000]
            nursery.cancel_scope.cancel()


async def test_cancelling_a_reader_against_the_real_server_frees_the_connection(
    server: RunningServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def listen(task_status: trio.TaskStatus[None]) -> None:
                async with open_client(server.ws_url) as client:
                    await next_of(client, Connected)
                    task_status.started()
                    async for _ in client:
                        pass

            await nursery.start(listen)
            await server.wait_for_connections(1)
            nursery.cancel_scope.cancel()
        await server.wait_for_connections(0)
        assert client_tasks() == []
