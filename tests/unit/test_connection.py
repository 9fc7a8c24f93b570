"""One client connection end to end, over an in-memory Transport: no sockets, no Quart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from support import running_tasks
from wsproto.frame_protocol import FrameProtocol

from trio_broadcast.server.config import Settings
from trio_broadcast.server.connection import ConnectParams, TransportClosed, run_connection
from trio_broadcast.server.hub import MAX_RESTARTS, Hub
from trio_broadcast.wire.protocol import Publish

TIMEOUT = 5.0  # seconds; only reached when a test is broken


@attrs.frozen
class Closed:
    """The close frame a connection sent."""

    code: int
    reason: str


class FakeTransport:
    """A Transport whose client is the test: it feeds frames in and reads what was sent.

    ``free_sends`` writes go out at once (a write can carry many frames); after that every
    write waits for ``release`` (never set: a peer that stopped reading), and ``write_nowait``
    refuses. ``raw=False``: a transport that sends text frames only, one at a time.
    """

    def __init__(self, *, free_sends: int | None = None, raw: bool = True) -> None:
        self._client_send, self._client_receive = trio.open_memory_channel[str | bytes | None](100)
        self._sent_send, self._sent_receive = trio.open_memory_channel[str | Closed](1000)
        self.free_sends = free_sends  # None: never block
        self.release = trio.Event()  # lets blocked sends through
        self.send_blocked = trio.Event()  # set when a send starts waiting for ``release``
        self.written_nowait = 0  # writes by the hub's pass (write_nowait)
        self.take_only: int | None = None  # the next write_nowait takes this many bytes only
        self._tail = b""  # what a short write_nowait left, sent before the next write
        self._parser = FrameProtocol(client=True, extensions=[])
        self._partial = ""  # a text frame whose start arrived
        self.raw = self if raw else None

    # -- the Transport protocol, as the connection sees it --

    async def receive(self) -> str | bytes | None:
        try:
            return await self._client_receive.receive()
        except trio.EndOfChannel:
            raise TransportClosed(1000) from None

    async def send(self, frame: str) -> None:
        await self._may_send()
        self._sent_send.send_nowait(frame)

    def write_nowait(self, data: bytes) -> int:
        if self._tail or self.free_sends == 0:
            return -1
        if self.free_sends is not None:
            self.free_sends -= 1
        taken = len(data) if self.take_only is None else self.take_only
        self.take_only = None
        self._deliver(data[:taken])
        self._tail = data[taken:]
        self.written_nowait += 1
        return taken

    async def write(self, data: bytes) -> bool:
        await self._may_send()
        data, self._tail = self._tail + data, b""
        self._deliver(data)
        return True

    async def close(self, code: int, reason: str) -> None:
        self._sent_send.send_nowait(Closed(code, reason))
        self._client_send.close()  # the client replies to the close at once

    async def _may_send(self) -> None:
        if self.free_sends is not None:
            if self.free_sends == 0:
                self.send_blocked.set()
                await self.release.wait()
            else:
                self.free_sends -= 1
        await trio.lowlevel.checkpoint()

    def _deliver(self, data: bytes) -> None:
        self._parser.receive_bytes(data)
        for frame in self._parser.received_frames():
            self._partial += str(frame.payload)
            if frame.message_finished:
                self._sent_send.send_nowait(self._partial)
                self._partial = ""

    # -- the test's side --

    def feed(self, data: str | bytes | None) -> None:
        """The client sends a frame."""
        self._client_send.send_nowait(data)

    def feed_close(self) -> None:
        """The client goes away (the connection's next receive says it closed)."""
        self._client_send.close()

    def publish(self, message: str, id_: str | None = None) -> None:
        frame: dict[str, str] = {"message": message}
        if id_ is not None:
            frame["id"] = id_
        self.feed(json.dumps(frame))

    async def next(self) -> str | Closed:
        """What the connection sent next (a text frame or the close)."""
        return await self._sent_receive.receive()

    async def frame(self) -> dict[str, Any]:
        """The next text frame, decoded."""
        sent = await self.next()
        assert isinstance(sent, str), f"expected a frame, got {sent!r}"
        decoded: dict[str, Any] = json.loads(sent)
        return decoded

    async def closed(self) -> Closed:
        """The close frame, which must come next."""
        sent = await self.next()
        assert isinstance(sent, Closed), f"expected the close, got {sent!r}"
        return sent

    def nothing_more(self) -> bool:
        try:
            self._sent_receive.receive_nowait()
        except trio.WouldBlock:
            return True
        return False


@attrs.define
class Server:
    """A hub with its broadcaster running, and the nursery connections run in."""

    hub: Hub
    nursery: trio.Nursery

    async def connect(
        self, transport: FakeTransport | None = None, **params: Any
    ) -> tuple[FakeTransport, dict[str, Any]]:
        """Run a connection; return its transport and its welcome frame."""
        transport = FakeTransport() if transport is None else transport
        self.nursery.start_soon(run_connection, self.hub, transport, ConnectParams(**params))
        return transport, await transport.frame()


@attrs.define
class ServerFactory:
    nursery: trio.Nursery

    async def start(self, **settings: Any) -> Server:
        hub = Hub(Settings(**settings), server_name="trio-broadcast/test")
        await self.nursery.start(hub.serve)
        return Server(hub, self.nursery)


@pytest.fixture
async def servers() -> AsyncIterator[ServerFactory]:
    """Hubs started in a nursery that is cancelled after the test."""
    async with trio.open_nursery() as nursery:
        yield ServerFactory(nursery)
        nursery.cancel_scope.cancel()


def writer_tasks() -> int:
    """Connection writer tasks running now, anywhere in this run."""
    return sum(task.name.endswith(".Writer._write") for task in running_tasks())


# -- the happy path --------------------------------------------------------------------------


async def test_welcome_is_the_first_frame(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(publish_rate=None)
        _, welcome = await server.connect()
        assert welcome == {
            "type": "welcome",
            "client_id": welcome["client_id"],
            "seq": 0,
            "epoch": server.hub.epoch,
            "connections": 1,
            "server": "trio-broadcast/test",
            "batch": False,
            "limits": server.hub.settings.limits(),
        }
        assert server.hub.connection_count == 1
        assert server.hub.open_sessions == 1
        _, second = await server.connect(batch=True)
        assert second["connections"] == 2
        assert second["batch"] is True


async def test_published_message_reaches_others_and_the_sender_gets_an_ack(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        alice, alice_welcome = await server.connect()
        bob, _ = await server.connect()
        alice.publish("hello", "c-1")
        message = await bob.frame()
        assert message["type"] == "message"
        assert message["message"] == "hello"
        assert message["sender"] == alice_welcome["client_id"]
        assert message["seq"] == 1
        ack = await alice.frame()
        assert ack == {"type": "ack", "seq": 1, "timestamp": message["timestamp"], "id": "c-1"}
        await trio.testing.wait_all_tasks_blocked()
        assert alice.nothing_more()
        stats = server.hub.statistics()
        # two welcomes, bob's message, alice's ack: every written event counts
        assert (stats.frames_out, stats.messages_out) == (4, 4)


async def test_refused_connection_is_closed_with_the_reason_and_no_welcome(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(max_connections=1)
        await server.connect()
        refused = FakeTransport()
        await run_connection(server.hub, refused, ConnectParams())
        assert (await refused.closed()).code == 1013
        assert refused.nothing_more()
        assert server.hub.connection_count == 1
        assert server.hub.open_sessions == 1


async def test_shutdown_closes_connections_with_1001(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        clients = [(await server.connect())[0] for _ in range(3)]
        server.hub.close_all()
        for client in clients:
            assert (await client.closed()).code == 1001
        await server.hub.wait_until(lambda: server.hub.open_sessions == 0)
        assert server.hub.connection_count == 0


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("this is not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"id": "x"}', "invalid_message"),
        ('{"message": "x", "id": 5}', "invalid_id"),
        ('{"message": "x", "to": "bob"}', "unknown_field"),
        (b"\x00\x01", "binary_not_supported"),
        (None, "binary_not_supported"),
    ],
)
async def test_bad_frame_gets_an_error_and_the_connection_stays(
    servers: ServerFactory, data: str | bytes | None, code: str
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client, _ = await server.connect()
        listener, _ = await server.connect()
        client.feed(data)
        error = await client.frame()
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["detail"]
        assert server.hub.statistics().errors == {code: 1}
        # Still connected, and nothing was broadcast:
        client.publish("after the error")
        assert (await client.frame())["type"] == "ack"
        message = await listener.frame()
        assert (message["seq"], message["message"]) == (1, "after the error")


async def test_message_with_a_lone_surrogate_gets_an_error_and_broadcasts_nothing(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client, _ = await server.connect()
        listener, _ = await server.connect()
        client.feed('{"message": "\\ud800"}')
        client.publish("fine")
        error = await client.frame()
        assert (error["type"], error.get("code")) == ("error", "invalid_message")
        ack = await client.frame()
        assert (ack["type"], ack["seq"]) == ("ack", 1)
        assert (await listener.frame())["seq"] == 1


async def test_one_client_cannot_fail_the_hub_with_unencodable_messages(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        attacker, _ = await server.connect()
        bystander, _ = await server.connect()
        for _ in range(MAX_RESTARTS + 1):
            attacker.feed('{"message": "\\ud800"}')
            error = await attacker.frame()
            assert (error["type"], error.get("code")) == ("error", "invalid_message")
        assert server.hub.failed is None
        attacker.publish("fine")
        assert (await bystander.frame())["message"] == "fine"


async def test_unknown_field_with_a_lone_surrogate_gets_an_error_and_the_connection_stays(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client, _ = await server.connect()
        client.feed('{"message": "x", "\\udc00": 1}')
        assert (await client.frame())["code"] == "unknown_field"
        client.publish("fine")
        assert (await client.frame())["type"] == "ack"


async def test_deeply_nested_json_gets_an_error_and_the_connection_stays(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client, _ = await server.connect()
        client.feed("[" * 60_000)
        assert (await client.frame())["code"] == "invalid_json"
        client.publish("fine")
        assert (await client.frame())["type"] == "ack"


# -- rate limiting ---------------------------------------------------------------------------


async def test_publishing_over_the_rate_is_refused_with_rate_limited(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # The clock only moves when the test moves it (or everything is stuck: then fail_after).
    with trio.fail_after(TIMEOUT):
        server = await servers.start(publish_rate=1.0, publish_burst=2, rate_limit_strikes=None)
        client, _ = await server.connect()
        listener, _ = await server.connect()
        for text in ("one", "two"):
            client.publish(text)
            assert (await client.frame())["type"] == "ack"
        client.publish("three")
        error = await client.frame()
        assert error["type"] == "error"
        assert error["code"] == "rate_limited"
        assert [(await listener.frame())["message"] for _ in range(2)] == ["one", "two"]
        assert server.hub.statistics().errors == {"rate_limited": 1}

        autojump_clock.jump(1.0)  # one token back
        client.publish("four")
        assert (await client.frame())["type"] == "ack"
        assert (await listener.frame())["message"] == "four"


async def test_sustained_publishing_over_the_rate_closes_with_1008(
    servers: ServerFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(publish_rate=1.0, publish_burst=1, rate_limit_strikes=2)
        client, _ = await server.connect()
        listener, _ = await server.connect()
        client.publish("allowed")
        assert (await client.frame())["type"] == "ack"
        for _ in range(2):
            client.publish("refused")
            assert (await client.frame())["code"] == "rate_limited"
        client.publish("abuse")
        closed = await client.closed()
        assert closed.code == 1008
        await server.hub.wait_until(lambda: server.hub.open_sessions == 1)
        stats = server.hub.statistics()
        assert stats.evictions == {"rate_abuse": 1}
        assert stats.connections == 1
        assert (await listener.frame())["message"] == "allowed"
        await trio.testing.wait_all_tasks_blocked()
        assert listener.nothing_more()


# -- slow consumers and cancellation ---------------------------------------------------------


async def test_slow_consumer_is_closed_with_4008_and_leaves_the_hub(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(outbox_messages=2)
        hub = server.hub
        stalled, _ = await server.connect(FakeTransport(free_sends=1))
        publisher, _ = await server.connect()
        listener, _ = await server.connect()
        # 1 is in the stalled writer's hands, 2 and 3 fill its outbox, 4 overflows it.
        for index in range(1, 5):
            publisher.publish(f"m{index}")
            assert (await publisher.frame())["seq"] == index
            assert (await listener.frame())["seq"] == index
        assert hub.connection_count == 2  # the stalled one is out of the hub already
        assert hub.statistics().evictions == {"slow_consumer": 1}

        stalled.release.set()
        assert (await stalled.frame())["seq"] == 1  # the send that was under way completes
        closed = await stalled.closed()
        assert closed.code == 4008
        await hub.wait_until(lambda: hub.open_sessions == 2)
        assert stalled.nothing_more()

        publisher.publish("still flowing")
        assert (await listener.frame())["message"] == "still flowing"


async def test_a_plain_client_closed_while_sending_a_bundle_gets_no_more_of_it(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(outbox_messages=2)
        # Frame by frame (a transport without raw writes); the welcome, then every send waits.
        plain = FakeTransport(free_sends=1, raw=False)
        server.nursery.start_soon(run_connection, server.hub, plain, ConnectParams())
        assert (await plain.frame())["type"] == "welcome"
        sender = server.hub.subscribe().subscriber
        for text in ("m1", "m2"):  # one bundle: the writer takes both, stalls sending m1
            await server.hub.submit(sender, Publish(text))
        await plain.send_blocked.wait()
        for text in ("m3", "m4", "m5"):  # 3 events > outbox_messages: evicted
            await server.hub.submit(sender, Publish(text))
        await trio.testing.wait_all_tasks_blocked()
        plain.release.set()
        assert (await plain.frame())["message"] == "m1"  # already being written
        assert (await plain.closed()).code == 4008  # m2 is not sent after the eviction


@pytest.mark.parametrize("free_sends", [0, 1])  # stuck on the welcome, or on a message
@pytest.mark.parametrize("batch", [False, True])  # a batching client is handed back first
async def test_cancelling_a_connection_stuck_in_send_leaves_no_subscriber(
    servers: ServerFactory, free_sends: int, batch: bool
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        hub = server.hub
        publisher, _ = await server.connect()
        stuck = FakeTransport(free_sends=free_sends)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_connection, hub, stuck, ConnectParams(batch=batch))
            await hub.wait_until(lambda: hub.connection_count == 2)
            publisher.publish("to be stuck on")
            assert (await publisher.frame())["type"] == "ack"
            await stuck.send_blocked.wait()
            assert hub.open_sessions == 2
            nursery.cancel_scope.cancel()
        assert hub.connection_count == 1
        assert hub.open_sessions == 1
        # The hub goes on broadcasting to the rest, and never to the cancelled one.
        listener, _ = await server.connect()
        publisher.publish("after")
        assert (await listener.frame())["message"] == "after"
        assert hub.statistics().deliveries == 1 + 1
        assert hub.statistics().evictions == {}


async def test_cancelling_an_idle_connection_leaves_no_subscriber(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        hub = server.hub
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                transport = FakeTransport()
                nursery.start_soon(run_connection, hub, transport, ConnectParams())
                assert (await transport.frame())["type"] == "welcome"
                await trio.testing.wait_all_tasks_blocked()
                assert hub.connection_count == 1
                scope.cancel()
        assert hub.connection_count == 0
        assert hub.open_sessions == 0


# -- batching --------------------------------------------------------------------------------


async def test_batch_client_gets_queued_events_in_one_batch_frame(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        batched = FakeTransport(free_sends=0)  # stuck on the welcome while events queue up
        server.nursery.start_soon(run_connection, server.hub, batched, ConnectParams(batch=True))
        await batched.send_blocked.wait()
        publisher, _ = await server.connect()
        for index in range(3):
            publisher.publish(f"m{index}")
            assert (await publisher.frame())["type"] == "ack"

        batched.release.set()
        assert (await batched.frame())["type"] == "welcome"
        batch = await batched.frame()
        assert batch["type"] == "batch"
        assert [event["type"] for event in batch["events"]] == ["message"] * 3
        assert [event["seq"] for event in batch["events"]] == [1, 2, 3]
        assert [event["message"] for event in batch["events"]] == ["m0", "m1", "m2"]
        await trio.testing.wait_all_tasks_blocked()
        assert batched.nothing_more()
        stats = server.hub.statistics()
        # welcomes 2 frames / 2 events; publisher's acks 3 / 3; the batch 1 frame / 3 events
        assert (stats.frames_out, stats.messages_out) == (2 + 3 + 1, 2 + 3 + 3)


async def test_batch_client_gets_a_lone_event_as_a_plain_frame(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        batched, _ = await server.connect(batch=True)
        publisher, _ = await server.connect()
        for index in range(2):
            publisher.publish(f"m{index}")
            message = await batched.frame()
            assert message["type"] == "message"
            assert message["message"] == f"m{index}"
            await publisher.frame()


async def test_batch_client_gets_its_ack_and_errors_in_the_batch(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client = FakeTransport(free_sends=0)
        server.nursery.start_soon(run_connection, server.hub, client, ConnectParams(batch=True))
        await client.send_blocked.wait()
        client.feed("nonsense")
        client.publish("mine", "c-9")
        await trio.testing.wait_all_tasks_blocked()
        client.release.set()
        assert (await client.frame())["type"] == "welcome"
        batch = await client.frame()
        assert [event["type"] for event in batch["events"]] == ["error", "ack"]
        assert batch["events"][1]["id"] == "c-9"


@pytest.mark.parametrize("batch", [False, True])
async def test_clients_that_keep_up_are_written_by_the_pass_with_the_same_bytes(
    servers: ServerFactory, batch: bool
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        clients = [(await server.connect(batch=batch))[0] for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()  # their writers have handed them over
        sender = server.hub.subscribe().subscriber
        for text in ("a", "b", "c"):  # submit() does not yield: one bundle
            await server.hub.submit(sender, Publish(text))
        for client in clients:
            if batch:
                frame = await client.frame()
                assert [event["message"] for event in frame["events"]] == ["a", "b", "c"]
            else:
                assert [(await client.frame())["message"] for _ in range(3)] == ["a", "b", "c"]
            assert client.written_nowait == 1  # one write from the pass, no task woken


async def test_a_client_whose_socket_refuses_is_written_by_its_writer_then_handed_back(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client = FakeTransport(free_sends=2)  # the welcome and one write, then it stops reading
        server.nursery.start_soon(run_connection, server.hub, client, ConnectParams(batch=True))
        assert (await client.frame())["type"] == "welcome"
        await trio.testing.wait_all_tasks_blocked()
        sender = server.hub.subscribe().subscriber
        await server.hub.submit(sender, Publish("m1"))
        assert (await client.frame())["message"] == "m1"
        assert client.written_nowait == 1  # by the pass
        for text in ("m2", "m3"):
            await server.hub.submit(sender, Publish(text))
        await client.send_blocked.wait()  # the pass could not write: the writer waits instead
        await server.hub.submit(sender, Publish("m4"))
        await trio.testing.wait_all_tasks_blocked()
        client.release.set()
        client.free_sends = None
        assert [event["message"] for event in (await client.frame())["events"]] == ["m2", "m3"]
        assert (await client.frame())["message"] == "m4"
        await trio.testing.wait_all_tasks_blocked()
        await server.hub.submit(sender, Publish("m5"))  # handed back: the pass writes it
        assert (await client.frame())["message"] == "m5"
        assert client.written_nowait == 2
        stats = server.hub.statistics()
        assert (stats.frames_out, stats.messages_out) == (5, 6)  # welcome and 4 frames


async def test_a_writer_task_runs_only_while_the_client_has_something_queued(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        keeps_up, _ = await server.connect()
        stops = FakeTransport(free_sends=1)  # the welcome, then it stops reading
        server.nursery.start_soon(run_connection, server.hub, stops, ConnectParams())
        assert (await stops.frame())["type"] == "welcome"
        await trio.testing.wait_all_tasks_blocked()
        assert writer_tasks() == 0  # both handed to the pass once greeted
        stops.free_sends = 0
        sender = server.hub.subscribe().subscriber
        await server.hub.submit(sender, Publish("m1"))
        assert (await keeps_up.frame())["message"] == "m1"  # by the pass
        await stops.send_blocked.wait()  # queued: a writer started, and waits for the socket
        assert writer_tasks() == 1
        stops.release.set()
        stops.free_sends = None
        assert (await stops.frame())["message"] == "m1"
        await trio.testing.wait_all_tasks_blocked()
        assert writer_tasks() == 0  # all written: handed back to the pass, and ended
        await server.hub.submit(sender, Publish("m2"))
        assert (await stops.frame())["message"] == "m2"
        assert stops.written_nowait == 1  # by the pass again


async def test_what_is_queued_after_the_client_left_starts_no_writer(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(publish_rate=None)
        leaving, _ = await server.connect(batch=True)
        await trio.testing.wait_all_tasks_blocked()
        leaving.free_sends = 0  # the pass queues for it from now on
        sender = server.hub.subscribe().subscriber
        leaving.feed_close()
        for index in range(20):  # while its connection ends, every scheduling round
            await server.hub.submit(sender, Publish(f"m{index}"))
            await trio.lowlevel.checkpoint()
        await server.hub.wait_until(lambda: server.hub.open_sessions == 0)
        await trio.testing.wait_all_tasks_blocked()
        assert server.hub.statistics().restarts == 0  # the broadcaster never crashed
        assert writer_tasks() == 0


async def test_a_frame_the_socket_took_in_part_is_finished_before_anything_else(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client, _ = await server.connect()
        await trio.testing.wait_all_tasks_blocked()
        client.take_only = 5  # of the next write_nowait
        sender = server.hub.subscribe().subscriber
        await server.hub.submit(sender, Publish("cut in two"))
        assert (await client.frame())["message"] == "cut in two"  # the writer finished it
        await server.hub.submit(sender, Publish("next"))
        assert (await client.frame())["message"] == "next"
        assert client.written_nowait == 2


async def test_a_transport_without_raw_writes_gets_every_frame_through_send(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        client = FakeTransport(raw=False)
        server.nursery.start_soon(run_connection, server.hub, client, ConnectParams(batch=True))
        assert (await client.frame())["type"] == "welcome"
        sender = server.hub.subscribe().subscriber
        await server.hub.submit(sender, Publish("m1"))
        assert (await client.frame())["message"] == "m1"
        assert client.written_nowait == 0
        await trio.testing.wait_all_tasks_blocked()
        assert writer_tasks() == 1  # no pass writes to it: its one writer waits for the outbox


async def test_client_without_batch_gets_one_frame_per_event(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        plain = FakeTransport(free_sends=0)
        server.nursery.start_soon(run_connection, server.hub, plain, ConnectParams())
        await plain.send_blocked.wait()
        publisher, _ = await server.connect()
        for index in range(3):
            publisher.publish(f"m{index}")
            await publisher.frame()
        plain.release.set()
        assert (await plain.frame())["type"] == "welcome"
        assert [(await plain.frame())["seq"] for _ in range(3)] == [1, 2, 3]


# -- resume ----------------------------------------------------------------------------------


async def publish_history(server: Server, count: int) -> None:
    publisher, _ = await server.connect()
    for index in range(1, count + 1):
        publisher.publish(f"m{index}")
        assert (await publisher.frame())["seq"] == index


@pytest.mark.parametrize("batch", [False, True])
async def test_resume_replays_missed_messages_in_order_then_recovered(
    servers: ServerFactory, batch: bool
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        await publish_history(server, 5)
        client, welcome = await server.connect(since=2, epoch=server.hub.epoch, batch=batch)
        assert welcome["seq"] == 5
        if batch:
            events = (await client.frame())["events"]
        else:
            events = [await client.frame() for _ in range(3)]
        assert [(event["type"], event["seq"]) for event in events] == [
            ("message", 3),
            ("message", 4),
            ("message", 5),
        ]
        assert [event["message"] for event in events] == ["m3", "m4", "m5"]
        assert await client.frame() == {
            "type": "recovered",
            "complete": True,
            "since": 2,
            "replayed": 3,
            "seq": 5,
        }
        # Live messages follow the recovered frame.
        other, _ = await server.connect()
        other.publish("live")
        live = await client.frame()
        assert (live["type"], live["seq"], live["message"]) == ("message", 6, "live")


async def test_resume_of_a_single_message_is_a_plain_frame_even_for_batch_clients(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        await publish_history(server, 3)
        client, _ = await server.connect(since=2, epoch=server.hub.epoch, batch=True)
        message = await client.frame()
        assert (message["type"], message["seq"]) == ("message", 3)
        assert (await client.frame())["type"] == "recovered"


async def test_resume_with_nothing_missed_sends_recovered_only(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        await publish_history(server, 3)
        client, _ = await server.connect(since=3, epoch=server.hub.epoch)
        assert await client.frame() == {
            "type": "recovered",
            "complete": True,
            "since": 3,
            "replayed": 0,
            "seq": 3,
        }


async def test_resume_from_another_epoch_replays_this_epochs_history(
    servers: ServerFactory,
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        await publish_history(server, 3)
        client, _ = await server.connect(since=2, epoch="0ther0ne")
        assert [(await client.frame())["seq"] for _ in range(3)] == [1, 2, 3]
        assert await client.frame() == {
            "type": "recovered",
            "complete": False,
            "reason": "epoch_mismatch",
            "since": 2,
            "first_seq": 1,
            "replayed": 3,
            "seq": 3,
        }


async def test_last_replays_the_newest_broadcasts_then_recovered(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start()
        await publish_history(server, 5)
        client, welcome = await server.connect(last=2)
        assert welcome["seq"] == 5
        assert [(await client.frame())["message"] for _ in range(2)] == ["m4", "m5"]
        assert await client.frame() == {
            "type": "recovered",
            "complete": True,
            "since": 3,
            "replayed": 2,
            "seq": 5,
        }


async def test_resume_past_the_history_reports_what_was_lost(servers: ServerFactory) -> None:
    with trio.fail_after(TIMEOUT):
        server = await servers.start(history_size=2)
        await publish_history(server, 5)
        client, _ = await server.connect(since=1, epoch=server.hub.epoch)
        assert [(await client.frame())["seq"] for _ in range(2)] == [4, 5]
        assert await client.frame() == {
            "type": "recovered",
            "complete": False,
            "reason": "history_expired",
            "since": 1,
            "first_seq": 4,
            "replayed": 2,
            "seq": 5,
        }


# -- the handshake's query string ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ConnectParams()),
        ({"since": "12", "epoch": "k2x8w0qv"}, ConnectParams(since=12, epoch="k2x8w0qv")),
        ({"since": "0", "epoch": "e"}, ConnectParams(since=0, epoch="e")),
        ({"batch": "1"}, ConnectParams(batch=True)),
        ({"batch": "0"}, ConnectParams()),
        ({"batch": "yes"}, ConnectParams()),
        ({"epoch": "e"}, ConnectParams(epoch="e")),
        ({"last": "50"}, ConnectParams(last=50)),
        ({"last": "0", "since": "3", "epoch": "e"}, ConnectParams(since=3, epoch="e", last=0)),
    ],
)
def test_query_string_is_read(query: dict[str, str], expected: ConnectParams) -> None:
    assert ConnectParams.from_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        {"since": "12"},
        {"since": "12", "epoch": ""},
        {"since": "-1", "epoch": "e"},
        {"since": "abc", "epoch": "e"},
        {"since": "1.5", "epoch": "e"},
        {"since": "", "epoch": "e"},
    ],
)
def test_bad_query_string_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="since"):
        ConnectParams.from_query(query)


@pytest.mark.parametrize("last", ["-1", "x", "", "2.0"])
def test_bad_last_is_refused(last: str) -> None:
    with pytest.raises(ValueError, match="'last' must be a non-negative integer"):
        ConnectParams.from_query({"last": last})
