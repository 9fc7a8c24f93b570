"""The fan-out core, driven directly: no sockets, no connections, outboxes read by hand."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from support import take_bundles
from wsproto.frame_protocol import FrameProtocol

from trio_broadcast.errors import CloseConnection, SlowConsumerError
from trio_broadcast.server import hub as hub_module
from trio_broadcast.server.config import Settings
from trio_broadcast.server.hub import MAX_RESTARTS, Hub, State, Subscriber
from trio_broadcast.wire.frames import PING_FRAME
from trio_broadcast.wire.protocol import Outgoing, Publish, encode_message, format_timestamp

TIMEOUT = 5.0  # seconds; only reached when a test is broken


def make_hub(**overrides: Any) -> Hub:
    return Hub(Settings(**overrides), server_name="trio-broadcast/test")


_taken: dict[Subscriber, list[Outgoing]] = {}  # received in a bundle, not yet taken


async def take(subscriber: Subscriber) -> Outgoing:
    """Receive the next outbox entry the way the connection's writer does (bytes included)."""
    entries = _taken.setdefault(subscriber, [])
    while not entries:
        for bundle in await take_bundles(subscriber):
            entries += bundle.entries
    return entries.pop(0)


async def take_json(subscriber: Subscriber) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads((await take(subscriber)).frame)
    return frame


def queued(subscriber: Subscriber) -> list[Outgoing]:
    """Everything left in a subscriber's outbox, without waiting."""
    entries = _taken.pop(subscriber, [])
    for bundle in subscriber.outbox.take_nowait():
        entries += bundle.entries
    return entries


def outbox_closed(subscriber: Subscriber) -> bool:
    queued(subscriber)
    return subscriber.outbox.empty and subscriber.state is State.CLOSED


@attrs.define
class Running:
    hub: Hub
    nursery: trio.Nursery


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    """A hub with its broadcaster running; afterwards close_all() must make serve() return."""
    hub = make_hub()
    with trio.CancelScope() as teardown:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            yield Running(hub, nursery)
            hub.close_all()
            teardown.deadline = trio.current_time() + TIMEOUT
    assert not teardown.cancelled_caught, "serve() did not return after close_all()"


# -- fan-out ---------------------------------------------------------------------------------


async def test_broadcast_reaches_every_subscriber_but_the_sender(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender, *others = (hub.subscribe().subscriber for _ in range(4))
        await hub.submit(sender, Publish("hello"))
        for other in others:
            frame = await take_json(other)
            assert frame["type"] == "message"
            assert frame["message"] == "hello"
            assert frame["sender"] == sender.client_id
            assert frame["seq"] == 1
        ack = await take_json(sender)
        assert ack["type"] == "ack"
        await trio.testing.wait_all_tasks_blocked()
        assert all(queued(subscriber) == [] for subscriber in [sender, *others])


async def test_sender_gets_an_ack_with_the_seq_timestamp_and_its_id(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        other = hub.subscribe().subscriber
        await hub.submit(sender, Publish("hello", id="c-17"))
        message = await take_json(other)
        ack = await take_json(sender)
        assert ack == {
            "type": "ack",
            "seq": message["seq"],
            "timestamp": message["timestamp"],
            "id": "c-17",
        }


async def test_ack_without_an_id_has_no_id_field(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        await hub.submit(sender, Publish("hello"))
        ack = await take_json(sender)
        assert set(ack) == {"type", "seq", "timestamp"}


async def test_seq_increases_by_exactly_one_per_broadcast(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        first = hub.subscribe().subscriber
        second = hub.subscribe().subscriber
        listener = hub.subscribe().subscriber
        for index in range(6):
            await hub.submit(first if index % 2 else second, Publish(f"m{index}"))
        seen = [(await take_json(listener))["seq"] for _ in range(6)]
        assert seen == [1, 2, 3, 4, 5, 6]
        assert hub.seq == 6
        # Each publisher sees every seq too: the other's as messages, its own as acks.
        for publisher in (first, second):
            frames = [await take_json(publisher) for _ in range(6)]
            assert [frame["seq"] for frame in frames] == seen
            assert sum(frame["type"] == "ack" for frame in frames) == 3


async def test_messages_are_delivered_in_submission_order(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        listener = hub.subscribe().subscriber
        texts = [f"message {index}" for index in range(50)]
        for text in texts:
            await hub.submit(sender, Publish(text))
        assert [(await take_json(listener))["message"] for _ in texts] == texts


async def test_each_broadcast_is_encoded_once_and_shared_by_every_outbox(
    running: Running,
) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        others = [hub.subscribe().subscriber for _ in range(5)]
        await hub.submit(sender, Publish("shared"))
        entries = [await take(other) for other in others]
        assert all(entry is entries[0] for entry in entries)
        assert entries[0].seq == 1
        # ... and the history keeps that same object for resuming clients.
        replay = hub.subscribe(since=0, epoch=hub.epoch).replay
        assert len(replay) == 1
        assert replay[0] is entries[0]


async def test_messages_accepted_together_travel_as_one_bundle_with_acks_in_place(
    running: Running,
) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        alice = hub.subscribe().subscriber
        bob = hub.subscribe().subscriber
        listeners = [hub.subscribe().subscriber for _ in range(2)]
        # submit() does not yield while the intake has room: the broadcaster finds all four.
        await hub.submit(alice, Publish("a1", id="x"))
        await hub.submit(bob, Publish("b1"))
        await hub.submit(alice, Publish("a2"))
        await hub.submit(bob, Publish("b2"))
        await trio.testing.wait_all_tasks_blocked()
        bundles = [bundle for listener in listeners for bundle in listener.outbox.take_nowait()]
        assert bundles[0] is bundles[1]  # one channel operation each, one shared object
        assert [entry.seq for entry in bundles[0].entries] == [1, 2, 3, 4]
        assert bundles[0].size == sum(entry.size for entry in bundles[0].entries)
        assert all(queued(listener) == [] for listener in listeners)

        def kinds(subscriber: Subscriber) -> list[tuple[str, int]]:
            (bundle,) = subscriber.outbox.take_nowait()
            frames = [json.loads(entry.frame) for entry in bundle.entries]
            return [(frame["type"], frame["seq"]) for frame in frames]

        # Each publisher gets the others' messages and its own acks, in seq order.
        assert kinds(alice) == [("ack", 1), ("message", 2), ("ack", 3), ("message", 4)]
        assert kinds(bob) == [("message", 1), ("ack", 2), ("message", 3), ("ack", 4)]
        assert hub.statistics().deliveries == 2 * 4 + 2 + 2


async def test_a_bundle_counts_its_events_against_outbox_messages() -> None:
    hub = make_hub(outbox_messages=3)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            sender = hub.subscribe().subscriber
            listener = hub.subscribe().subscriber
            for index in range(2):
                await hub.submit(sender, Publish(f"m{index}"))
            await trio.testing.wait_all_tasks_blocked()
            assert listener.outbox.events == 2  # in one bundle
            assert hub.statistics().outbox_depth_max == 2
            for index in range(2):
                await hub.submit(sender, Publish(f"n{index}"))
            await trio.testing.wait_all_tasks_blocked()
            assert isinstance(listener.closing, SlowConsumerError)  # 2 + 2 > 3
            hub.close_all()


async def test_a_burst_larger_than_an_outbox_does_not_evict_a_subscriber_that_keeps_up() -> None:
    hub = make_hub(outbox_messages=8)  # bundles of at most 2
    received: list[int] = []

    async def keep_up(subscriber: Subscriber) -> None:
        while len(received) < 40:
            received.append((await take(subscriber)).seq)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            sender = hub.subscribe().subscriber
            listener = hub.subscribe().subscriber
            nursery.start_soon(keep_up, listener)
            await trio.testing.wait_all_tasks_blocked()
            for index in range(40):  # in the intake before the broadcaster runs again
                await hub.submit(sender, Publish(f"m{index}"))
            await trio.testing.wait_all_tasks_blocked()
            assert listener.closing is None
            assert received == list(range(1, 41))
            hub.close_all()


async def test_broadcast_frame_size_counts_utf8_bytes(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        other = hub.subscribe().subscriber
        await hub.submit(sender, Publish("😀 é"))
        entry = await take(other)
        assert entry.size == len(entry.frame.encode())
        assert other.outbox.bytes == 0


# -- subscribing -----------------------------------------------------------------------------


def test_welcome_tells_the_client_who_it_is_and_where_the_history_stands() -> None:
    hub = make_hub(publish_rate=None)
    first = hub.subscribe()
    second = hub.subscribe(batch=True)
    welcome = json.loads(second.welcome)
    assert welcome == {
        "type": "welcome",
        "client_id": second.subscriber.client_id,
        "seq": 0,
        "epoch": hub.epoch,
        "connections": 2,
        "server": "trio-broadcast/test",
        "batch": True,
        "limits": hub.settings.limits(),
    }
    assert first.subscriber.client_id != second.subscriber.client_id
    assert second.recovery is None
    assert second.replay == []


def test_every_hub_has_its_own_epoch() -> None:
    assert make_hub().epoch != make_hub().epoch


async def test_resume_snapshot_comes_with_the_subscription(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        for index in range(5):
            await hub.submit(sender, Publish(f"m{index}"))
        for _ in range(5):
            await take(sender)
        subscription = hub.subscribe(since=2, epoch=hub.epoch)
        assert [entry.seq for entry in subscription.replay] == [3, 4, 5]
        assert subscription.recovery is not None
        assert subscription.recovery.complete
        assert json.loads(subscription.welcome)["seq"] == 5

        stale = hub.subscribe(since=2, epoch="0ther0ne")
        assert [entry.seq for entry in stale.replay] == [1, 2, 3, 4, 5]
        assert stale.recovery is not None
        assert stale.recovery.reason == "epoch_mismatch"

        newcomer = hub.subscribe(last=2)
        assert [entry.seq for entry in newcomer.replay] == [4, 5]
        assert newcomer.recovery is not None
        assert (newcomer.recovery.complete, newcomer.recovery.since) == (True, 3)


def test_connection_limit_refuses_with_1013() -> None:
    hub = make_hub(max_connections=2)
    hub.subscribe()
    leaving = hub.subscribe().subscriber
    with pytest.raises(CloseConnection) as caught:
        hub.subscribe()
    assert caught.value.close_code == 1013
    assert hub.connection_count == 2
    assert hub.statistics().evictions == {"connection_limit": 1}
    hub.unsubscribe(leaving)
    hub.subscribe()  # a place came free
    assert hub.connection_count == 2


def test_unsubscribe_forgets_the_subscriber_and_closes_its_outbox() -> None:
    hub = make_hub()
    staying = hub.subscribe().subscriber
    leaving = hub.subscribe().subscriber
    hub.unsubscribe(leaving)
    hub.unsubscribe(leaving)  # idempotent
    assert hub.connection_count == 1
    assert outbox_closed(leaving)
    assert not outbox_closed(staying)
    assert leaving.closing is None


# -- slow consumers --------------------------------------------------------------------------


async def test_full_outbox_by_count_evicts_with_4008_without_touching_others() -> None:
    hub = make_hub(outbox_messages=2)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            sender = hub.subscribe().subscriber
            fast = hub.subscribe().subscriber
            slow = hub.subscribe().subscriber
            for seq in (1, 2, 3):
                await hub.submit(sender, Publish(f"m{seq}"))
                assert (await take(fast)).seq == seq
                assert json.loads((await take(sender)).frame)["type"] == "ack"
            assert isinstance(slow.closing, SlowConsumerError)
            assert slow.closing.close_code == 4008
            assert [entry.seq for entry in queued(slow)] == [1, 2]
            assert outbox_closed(slow)
            assert hub.connection_count == 2
            assert fast.closing is None
            assert sender.closing is None
            assert hub.statistics().evictions == {"slow_consumer": 1}

            await hub.submit(sender, Publish("after"))
            assert (await take(fast)).seq == 4
            hub.close_all()


async def test_full_outbox_by_bytes_evicts_with_4008_without_touching_others() -> None:
    text = "x" * 500
    size = len(encode_message(1, text, format_timestamp(0.0), "0" * 12).encode())
    hub = make_hub(outbox_bytes=2 * size + size // 2, max_message_bytes=500)  # two, by bytes
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            sender = hub.subscribe().subscriber
            fast = hub.subscribe().subscriber
            slow = hub.subscribe().subscriber
            for seq in (1, 2, 3):
                await hub.submit(sender, Publish(text))
                entry = await take(fast)
                assert (entry.seq, entry.size) == (seq, size)
                await take(sender)
                if seq < 3:
                    assert slow.closing is None
                    assert slow.outbox.bytes == seq * size
            assert isinstance(slow.closing, SlowConsumerError)
            assert slow.closing.close_code == 4008
            assert len(queued(slow)) == 2  # far below outbox_messages: bytes decided
            assert outbox_closed(slow)
            assert hub.connection_count == 2
            assert fast.closing is None
            assert fast.outbox.bytes == 0
            hub.close_all()


async def test_reply_to_a_full_outbox_evicts_that_subscriber_only() -> None:
    hub = make_hub(outbox_messages=1)
    with trio.fail_after(TIMEOUT):
        other = hub.subscribe().subscriber
        target = hub.subscribe().subscriber
        hub.reply(target, '{"type":"error"}')
        assert target.closing is None
        hub.reply(target, '{"type":"error"}')
        assert isinstance(target.closing, SlowConsumerError)
        assert hub.connection_count == 1
        assert other.closing is None
        assert queued(other) == []
        hub.reply(target, '{"type":"error"}')  # a closing subscriber is left alone
        assert [entry.frame for entry in queued(target)] == ['{"type":"error"}']
        await trio.lowlevel.checkpoint()


# -- shutdown and failure --------------------------------------------------------------------


async def test_close_all_sends_1001_to_everyone_and_refuses_new_subscribers() -> None:
    hub = make_hub()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            subscribers = [hub.subscribe().subscriber for _ in range(3)]
            hub.close_all()
            # serve() returns by itself once the intake is closed: the nursery can exit.
        for subscriber in subscribers:
            assert subscriber.closing is not None
            assert subscriber.closing.close_code == 1001
            assert outbox_closed(subscriber)
        assert hub.connection_count == 0
        with pytest.raises(CloseConnection) as caught:
            hub.subscribe()
        assert caught.value.close_code == 1001
        with pytest.raises(trio.ClosedResourceError):
            await hub.submit(subscribers[0], Publish("too late"))


async def test_crashed_broadcaster_is_restarted(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = running.hub
    crashes = MAX_RESTARTS  # the most that is tolerated
    real_broadcast = hub._broadcast

    def flaky(accepted: list[tuple[Subscriber, Publish]]) -> None:
        nonlocal crashes
        if crashes:
            crashes -= 1
            raise RuntimeError("boom")
        real_broadcast(accepted)

    monkeypatch.setattr(hub, "_broadcast", flaky)
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        listener = hub.subscribe().subscriber
        for index in range(MAX_RESTARTS + 2):
            await hub.submit(sender, Publish(f"m{index}"))
            await trio.testing.wait_all_tasks_blocked()  # one broadcast (or crash) each
        assert (await take_json(listener))["message"] == f"m{MAX_RESTARTS}"
        assert (await take_json(listener))["message"] == f"m{MAX_RESTARTS + 1}"
        stats = hub.statistics()
        assert stats.restarts == MAX_RESTARTS
        assert not stats.failed
        assert hub.failed is None
        assert not hub.failed_event.is_set()
        assert listener.closing is None


async def test_too_many_crashes_fail_the_hub_and_close_everyone_with_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = make_hub()
    error = RuntimeError("boom")

    def broken(accepted: list[tuple[Subscriber, Publish]]) -> None:
        raise error

    monkeypatch.setattr(hub, "_broadcast", broken)
    failure: BaseException | None = None

    async def serve() -> None:
        nonlocal failure
        try:
            await hub.serve()
        except RuntimeError as raised:
            failure = raised

    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        listener = hub.subscribe().subscriber
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            for index in range(MAX_RESTARTS + 1):
                await hub.submit(sender, Publish(f"m{index}"))
                await trio.testing.wait_all_tasks_blocked()  # one crash each
        assert failure is error
        assert hub.failed is error
        assert hub.failed_event.is_set()
        for subscriber in (sender, listener):
            assert subscriber.closing is not None
            assert subscriber.closing.close_code == 1011
            assert outbox_closed(subscriber)
        assert hub.connection_count == 0
        with pytest.raises(CloseConnection) as caught:
            hub.subscribe()
        assert caught.value.close_code == 1011
        stats = hub.statistics()
        assert stats.failed
        assert stats.restarts == MAX_RESTARTS + 1


async def test_crashes_older_than_the_restart_window_are_forgotten(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "RESTART_WINDOW", 1.0)
    hub = make_hub()
    crash = True

    def flaky(accepted: list[tuple[Subscriber, Publish]]) -> None:
        if crash:
            raise RuntimeError("boom")

    monkeypatch.setattr(hub, "_broadcast", flaky)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            sender = hub.subscribe().subscriber
            for index in range(MAX_RESTARTS):
                await hub.submit(sender, Publish(f"m{index}"))
                await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().restarts == MAX_RESTARTS
            autojump_clock.jump(2.0)
            await hub.submit(sender, Publish("one more crash, in a fresh window"))
            await trio.testing.wait_all_tasks_blocked()
            assert hub.failed is None
            assert hub.statistics().restarts == 1
            crash = False
            hub.close_all()


async def test_broadcast_that_cannot_be_encoded_does_not_break_resume(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        listener = hub.subscribe().subscriber
        # A lone surrogate: the decoder lets it through (see test_protocol), UTF-8 cannot carry it.
        for text in ["a", "\ud800", "c", "d"]:
            await hub.submit(sender, Publish(text))
        received = [await take_json(listener) for _ in range(3)]
        assert [frame["message"] for frame in received] == ["a", "c", "d"]
        # A client that saw "c" resumes: it must get "d" back.
        replay = hub.subscribe(since=received[1]["seq"], epoch=hub.epoch).replay
        assert [json.loads(entry.frame)["message"] for entry in replay] == ["d"]


# -- waiting and counting --------------------------------------------------------------------


async def test_wait_until_returns_at_once_when_the_predicate_holds() -> None:
    hub = make_hub()
    returned: list[bool] = []

    async def wait() -> None:
        await hub.wait_until(lambda: hub.connection_count == 0)
        returned.append(True)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == [True]  # nothing came or went: it did not wait for that


async def test_wait_until_wakes_when_clients_come_and_go() -> None:
    hub = make_hub()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            reached: list[int] = []

            async def wait_for(count: int) -> None:
                await hub.wait_until(lambda: hub.connection_count == count)
                reached.append(count)

            nursery.start_soon(wait_for, 2)
            await trio.testing.wait_all_tasks_blocked()
            first = hub.subscribe().subscriber
            await trio.testing.wait_all_tasks_blocked()
            assert reached == []
            hub.subscribe()
            await trio.testing.wait_all_tasks_blocked()
            assert reached == [2]

            nursery.start_soon(wait_for, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert reached == [2]
            hub.unsubscribe(first)
        assert reached == [2, 1]


async def test_wait_until_wakes_when_sessions_open_and_close() -> None:
    hub = make_hub()
    returned: list[int] = []

    async def wait() -> None:
        await hub.wait_until(lambda: hub.open_sessions == 0)
        returned.append(hub.open_sessions)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            hub.session_opened()
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []
            hub.session_closed()
            await trio.testing.wait_all_tasks_blocked()
            assert returned == [0]


async def test_statistics_count_what_happened(running: Running) -> None:
    hub = running.hub
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        listeners = [hub.subscribe().subscriber for _ in range(3)]
        hub.unsubscribe(hub.subscribe().subscriber)
        for index in range(4):
            await hub.submit(sender, Publish(f"m{index}"))
        for _ in range(4):
            await take(listeners[0])
        await trio.testing.wait_all_tasks_blocked()
        hub.count_error("invalid_json")
        hub.count_error("invalid_json")
        hub.count_written(frames=2, messages=5)
        hub.count_eviction("rate_abuse")
        hub.session_opened()

        stats = hub.statistics()
        assert stats.epoch == hub.epoch
        assert stats.seq == 4
        assert stats.connections == 4
        assert stats.connections_total == 5
        assert stats.open_sessions == 1
        assert stats.messages_in == 4
        assert stats.deliveries == 12  # 4 messages x 3 listeners
        assert (stats.frames_out, stats.messages_out) == (2, 5)
        assert stats.errors == {"invalid_json": 2}
        assert stats.evictions == {"rate_abuse": 1}
        assert stats.outbox_depth_total == 4 + 4 + 4  # sender's acks, two unread listeners
        assert stats.outbox_depth_max == 4
        assert stats.history_length == 4
        assert stats.intake_depth == 0
        assert stats.restarts == 0
        assert not stats.failed
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            stats.seq = 0  # type: ignore[misc]
        hub.session_closed()


async def test_intake_depth_counts_messages_waiting_for_the_broadcaster() -> None:
    hub = make_hub()  # broadcaster not running
    with trio.fail_after(TIMEOUT):
        sender = hub.subscribe().subscriber
        for index in range(3):
            await hub.submit(sender, Publish(f"m{index}"))
        assert hub.statistics().intake_depth == 3
        assert hub.seq == 0


# -- writing directly from the pass ------------------------------------------------------------


class FakeSocket:
    """A DirectWriter: takes ``room`` more bytes (None: everything), then refuses."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.writes: list[bytes] = []  # what write_nowait was handed, each time
        self.written = bytearray()  # what it took
        self.times: list[float] = []  # trio.current_time() of each write
        self._wrote = trio.Event()  # set and replaced on every write

    def write_nowait(self, data: bytes) -> int:
        if self.room == 0:
            return -1
        taken = len(data) if self.room is None else min(len(data), self.room)
        if self.room is not None:
            self.room -= taken
        self.writes.append(data)
        self.written += data[:taken]
        self.times.append(trio.current_time())
        self._wrote.set()
        self._wrote = trio.Event()
        return taken

    async def wait_for_writes(self, count: int) -> None:
        while len(self.writes) < count:
            await self._wrote.wait()

    def frames(self) -> list[dict[str, Any]]:
        parser = FrameProtocol(client=True, extensions=[])
        parser.receive_bytes(bytes(self.written))
        return [json.loads(str(frame.payload)) for frame in parser.received_frames()]


def direct(hub: Hub, socket: FakeSocket, *, batch: bool = False) -> Subscriber:
    """A subscriber whose writer has sent its welcome and handed it to the pass."""
    subscriber = hub.subscribe(batch=batch, writer=socket).subscriber
    states = [subscriber.state]  # its writer has the welcome to send first
    hub.writer_idle(subscriber)
    assert [*states, subscriber.state] == [State.QUEUED, State.DIRECT]
    return subscriber


async def test_the_pass_writes_each_bundle_once_per_client_with_shared_bytes(
    running: Running,
) -> None:
    hub = running.hub
    sender = hub.subscribe().subscriber
    sockets = [FakeSocket() for _ in range(3)]
    listeners = [direct(hub, socket) for socket in sockets]
    for text in ("a", "b", "c"):  # accepted together: one bundle, one write each
        await hub.submit(sender, Publish(text))
    await trio.testing.wait_all_tasks_blocked()
    assert all(len(socket.writes) == 1 for socket in sockets)
    assert all(socket.writes[0] is sockets[0].writes[0] for socket in sockets)  # built once
    for socket in sockets:
        assert [(f["type"], f["seq"], f["message"]) for f in socket.frames()] == [
            ("message", 1, "a"),
            ("message", 2, "b"),
            ("message", 3, "c"),
        ]
    assert all(listener.state is State.DIRECT and listener.outbox.empty for listener in listeners)
    assert [frame["type"] for frame in unbundle(queued(sender))] == ["ack", "ack", "ack"]
    stats = hub.statistics()
    assert (stats.deliveries, stats.messages_out, stats.frames_out) == (9, 9, 9)


async def test_a_batching_client_is_written_one_batch_frame_per_bundle(running: Running) -> None:
    hub = running.hub
    sender = hub.subscribe().subscriber
    sockets = [FakeSocket(), FakeSocket()]
    for socket in sockets:
        direct(hub, socket, batch=True)
    await hub.submit(sender, Publish("a"))
    await hub.submit(sender, Publish("b"))
    await trio.testing.wait_all_tasks_blocked()
    assert sockets[0].writes[0] is sockets[1].writes[0]
    (frame,) = sockets[0].frames()
    assert frame["type"] == "batch"
    assert [event["message"] for event in frame["events"]] == ["a", "b"]
    stats = hub.statistics()
    assert (stats.messages_out, stats.frames_out) == (4, 2)


async def test_a_socket_that_takes_nothing_hands_the_client_to_its_writer(
    running: Running,
) -> None:
    hub = running.hub
    sender = hub.subscribe().subscriber
    socket = FakeSocket(room=0)
    listener = direct(hub, socket)
    await hub.submit(sender, Publish("first"))
    await trio.testing.wait_all_tasks_blocked()
    assert listener.outbox.events == 1
    states = [listener.state]
    hub.writer_idle(listener)  # something still waits: the writer keeps it
    assert [*states, listener.state] == [State.QUEUED, State.QUEUED]
    await hub.submit(sender, Publish("second"))
    await trio.testing.wait_all_tasks_blocked()
    assert [json.loads(entry.frame)["message"] for entry in queued(listener)] == [
        "first",
        "second",
    ]
    hub.writer_idle(listener)  # all written: back to the pass
    assert listener.state.name == "DIRECT"


async def test_a_socket_that_takes_part_of_a_write_wakes_the_writer_to_finish_it(
    running: Running,
) -> None:
    hub = running.hub
    sender = hub.subscribe().subscriber
    socket = FakeSocket(room=10)
    listener = direct(hub, socket)
    await hub.submit(sender, Publish("a long enough message"))
    await trio.testing.wait_all_tasks_blocked()
    assert len(socket.written) == 10
    assert listener.state is State.QUEUED
    (flush,) = listener.outbox.take_nowait()
    assert flush.entries == ()  # nothing to add: the writer only finishes the write
    await hub.submit(sender, Publish("next"))
    await trio.testing.wait_all_tasks_blocked()
    assert [json.loads(entry.frame)["message"] for entry in queued(listener)] == ["next"]
    assert hub.statistics().deliveries == 2


async def test_an_error_reply_to_a_direct_client_is_written_at_once(running: Running) -> None:
    hub = running.hub
    socket = FakeSocket()
    listener = direct(hub, socket)
    hub.reply(listener, '{"type":"error"}')
    assert listener.state is State.DIRECT
    assert socket.frames() == [{"type": "error"}]
    assert queued(listener) == []


async def test_an_error_reply_the_socket_cannot_take_goes_to_the_writer(running: Running) -> None:
    hub = running.hub
    listener = direct(hub, FakeSocket(room=0))
    hub.reply(listener, '{"type":"error"}')
    assert listener.state is State.QUEUED
    assert [entry.frame for entry in queued(listener)] == ['{"type":"error"}']


async def test_a_direct_author_gets_its_ack_written_by_the_pass(running: Running) -> None:
    hub = running.hub
    author_socket, listener_socket = FakeSocket(), FakeSocket()
    author = direct(hub, author_socket)
    direct(hub, listener_socket)
    await hub.submit(author, Publish("hello", id="p1"))
    await listener_socket.wait_for_writes(1)
    await author_socket.wait_for_writes(1)
    (ack,) = author_socket.frames()
    assert (ack["type"], ack["id"], ack["seq"]) == ("ack", "p1", 1)
    assert author.state is State.DIRECT
    assert queued(author) == []
    assert [frame["message"] for frame in listener_socket.frames()] == ["hello"]


def test_a_client_without_a_direct_writer_stays_with_its_writer() -> None:
    hub = make_hub()
    subscriber = hub.subscribe().subscriber
    hub.writer_idle(subscriber)
    assert subscriber.state is State.QUEUED


async def test_the_broadcaster_pauses_write_delay_between_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.05)
    socket = FakeSocket()
    async with serving(hub):
        sender = hub.subscribe().subscriber
        direct(hub, socket)
        await hub.submit(sender, Publish("one"))
        await trio.testing.wait_all_tasks_blocked()
        await hub.submit(sender, Publish("two"))  # arrives during the pause
        await hub.submit(sender, Publish("three"))
        with trio.fail_after(1):
            await socket.wait_for_writes(2)
    assert [frame["message"] for frame in socket.frames()] == ["one", "two", "three"]
    assert len(socket.writes) == 2  # two and three waited for the pause, and went together
    assert socket.times[1] - socket.times[0] >= 0.05


@pytest.mark.parametrize(
    ("room", "state", "flush"),
    [(None, State.DIRECT, False), (0, State.DIRECT, False), (1, State.QUEUED, True)],
)
async def test_the_hub_pings_its_direct_clients(
    autojump_clock: trio.testing.MockClock, room: int | None, state: State, flush: bool
) -> None:
    """A ping the socket takes whole changes nothing; one it cannot take at all is skipped
    (the next interval tries again); one it takes in part is finished by the writer."""
    hub = make_hub(ping_interval=1.0, idle_timeout=3.0)
    socket = FakeSocket(room=room)
    async with serving(hub):
        listener = direct(hub, socket)
        await trio.sleep(1.5)
        assert listener.state is state
        assert bytes(socket.written) == (PING_FRAME if room is None else PING_FRAME[: room or 0])
        assert [bundle.entries for bundle in listener.outbox.take_nowait()] == (
            [()] if flush else []
        )


class LongPasses:
    """``time`` for the hub, whose passes each seem to take ``pass_cpu`` seconds of CPU."""

    def __init__(self, pass_cpu: float) -> None:
        self._cpu = 0.0
        self._step = pass_cpu / 2  # thread_time() is read before and after a pass
        self.time = time.time

    def thread_time(self) -> float:
        self._cpu += self._step
        return self._cpu


async def test_after_a_long_pass_with_nothing_waiting_the_broadcaster_does_not_pause(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "time", LongPasses(pass_cpu=0.04))  # pauses of 10 ms
    hub = make_hub()
    socket = FakeSocket()
    async with serving(hub):
        sender = hub.subscribe().subscriber
        direct(hub, socket)
        await hub.submit(sender, Publish("alone"))
        await trio.testing.wait_all_tasks_blocked()  # its pass, and no pause: nothing came
        sent = trio.current_time()
        await hub.submit(sender, Publish("next"))
        await socket.wait_for_writes(2)
        assert socket.times[1] == sent  # not held back by a pause
    assert [frame["message"] for frame in socket.frames()] == ["alone", "next"]


def unbundle(entries: list[Outgoing]) -> list[dict[str, Any]]:
    return [json.loads(entry.frame) for entry in entries]


@contextlib.asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve)
        yield
        hub.close_all()
