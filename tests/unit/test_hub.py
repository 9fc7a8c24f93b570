"""The fan-out core, driven directly: no sockets, no connections, outboxes read by hand."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from trio_broadcast.errors import CloseConnection, SlowConsumerError
from trio_broadcast.server import hub as hub_module
from trio_broadcast.server.config import Settings
from trio_broadcast.server.hub import MAX_RESTARTS, Hub, Subscriber, TickPass
from trio_broadcast.wire.protocol import Outgoing, Publish, encode_message, format_timestamp

TIMEOUT = 5.0  # seconds; only reached when a test is broken


def make_hub(**overrides: Any) -> Hub:
    return Hub(Settings(**overrides), server_name="trio-broadcast/test")


_taken: dict[Subscriber, list[Outgoing]] = {}  # received in a bundle, not yet taken


async def take(subscriber: Subscriber) -> Outgoing:
    """Receive the next outbox entry the way the connection's writer does (bytes included)."""
    entries = _taken.setdefault(subscriber, [])
    if not entries:
        bundle = await subscriber.inbox.receive()
        subscriber.queued -= len(bundle.entries)
        subscriber.queued_bytes -= bundle.size
        entries += bundle.entries
    return entries.pop(0)


async def take_json(subscriber: Subscriber) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads((await take(subscriber)).frame)
    return frame


def queued(subscriber: Subscriber) -> list[Outgoing]:
    """Everything left in a subscriber's outbox, without waiting."""
    entries = _taken.pop(subscriber, [])
    while True:
        try:
            entries += subscriber.inbox.receive_nowait().entries
        except (trio.WouldBlock, trio.EndOfChannel):
            return entries


def outbox_closed(subscriber: Subscriber) -> bool:
    queued(subscriber)
    try:
        subscriber.inbox.receive_nowait()
    except trio.EndOfChannel:
        return True
    except trio.WouldBlock:
        return False
    raise AssertionError("an entry arrived while checking")  # pragma: no cover


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
        bundles = [listener.inbox.receive_nowait() for listener in listeners]
        assert bundles[0] is bundles[1]  # one channel operation each, one shared object
        assert [entry.seq for entry in bundles[0].entries] == [1, 2, 3, 4]
        assert bundles[0].size == sum(entry.size for entry in bundles[0].entries)
        assert all(queued(listener) == [] for listener in listeners)

        def kinds(subscriber: Subscriber) -> list[tuple[str, int]]:
            (bundle,) = [subscriber.inbox.receive_nowait()]
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
            assert listener.queued == 2  # in one bundle
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
        assert other.queued_bytes == 0


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
                    assert slow.queued_bytes == seq * size
            assert isinstance(slow.closing, SlowConsumerError)
            assert slow.closing.close_code == 4008
            assert len(queued(slow)) == 2  # far below outbox_messages: bytes decided
            assert outbox_closed(slow)
            assert hub.connection_count == 2
            assert fast.closing is None
            assert fast.queued_bytes == 0
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
    with trio.fail_after(TIMEOUT):
        await hub.wait_until(lambda: hub.connection_count == 0)


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
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            hub.session_opened()
            nursery.start_soon(hub.wait_until, lambda: hub.open_sessions == 0)
            await trio.testing.wait_all_tasks_blocked()
            hub.session_closed()


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


# -- the coalescing tick ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[trio.Nursery]:
    """The hub's ``serve`` running in a nursery, cancelled when the block ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve)
        yield nursery
        nursery.cancel_scope.cancel()


@attrs.define
class Writes:
    """A ``write_nowait`` for Hub.park that records when it runs and says when to stop."""

    stay_for: int  # calls that answer "stay parked"
    busy: float = 0.0  # CPU seconds the first call burns (a long pass)
    times: list[float] = attrs.field(factory=list)  # trio time of every call

    def __call__(self, tick: TickPass) -> bool:
        self.times.append(trio.current_time())
        if len(self.times) == 1 and self.busy:
            started = time.thread_time()
            while time.thread_time() - started < self.busy:
                pass
        return len(self.times) <= self.stay_for


@attrs.define
class Drains:
    """A ``write_nowait`` for Hub.park that takes the outbox, as the connection's writer does,
    and keeps what each pass found there."""

    subscriber: Subscriber
    stay_for: int  # calls that answer "stay parked"
    found: list[list[Any]] = attrs.field(factory=list)  # per call: the bundles taken

    def __call__(self, tick: TickPass) -> bool:
        bundles = []
        while self.subscriber.queued:
            bundle = self.subscriber.inbox.receive_nowait()
            self.subscriber.queued -= len(bundle.entries)
            self.subscriber.queued_bytes -= bundle.size
            bundles.append(bundle)
        self.found.append(bundles)
        return len(self.found) < self.stay_for

    def kinds(self, call: int) -> list[tuple[str, int]]:
        frames = [
            json.loads(entry.frame) for bundle in self.found[call] for entry in bundle.entries
        ]
        return [(frame["type"], frame["seq"]) for frame in frames]


async def test_the_tick_passes_when_something_is_broadcast_and_then_at_most_every_write_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.05)
    handed_back: list[float] = []
    async with serving(hub) as nursery:
        subscriber = hub.subscribe(batch=True).subscriber
        sender = hub.subscribe().subscriber
        writes = Writes(stay_for=2)

        async def park() -> None:
            await hub.park(subscriber, writes)
            handed_back.append(trio.current_time())

        nursery.start_soon(park)
        await trio.sleep(1)
        assert writes.times == []  # nothing broadcast: no pass
        start = trio.current_time()
        with trio.fail_after(TIMEOUT):
            for text in ("m1", "m2", "m3"):  # the first at once; the others in the next pass
                await hub.submit(sender, Publish(text))
                await trio.sleep(0.001)
            await trio.sleep(1)
            assert writes.times == pytest.approx([start, start + 0.05])
            assert handed_back == []
            await hub.submit(sender, Publish("m4"))  # the third call says stop
            await trio.testing.wait_all_tasks_blocked()
        assert writes.times[2] == pytest.approx(start + 1.003)
        assert handed_back == [writes.times[2]]


async def test_the_tick_pauses_longer_after_a_long_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.01)
    async with serving(hub) as nursery:
        subscriber = hub.subscribe(batch=True).subscriber
        sender = hub.subscribe().subscriber
        writes = Writes(stay_for=1, busy=0.05)
        nursery.start_soon(hub.park, subscriber, writes)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(TIMEOUT):
            await hub.submit(sender, Publish("m1"))
            await trio.testing.wait_all_tasks_blocked()
            await hub.submit(sender, Publish("m2"))
            await trio.sleep(1)
        assert len(writes.times) == 2
        # The pass took 50 ms of CPU: the next one comes TICK_LOAD_FACTOR times that later.
        assert writes.times[1] - writes.times[0] >= hub_module.TICK_LOAD_FACTOR * 0.05


async def test_a_long_tick_pass_lets_other_tasks_run_between_chunks(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "TICK_CHUNK", 1)
    hub = make_hub(write_delay=0.05)
    other_task_ran = False
    first_written = trio.Event()
    all_written = trio.Event()
    seen: list[tuple[int, bool]] = []  # (subscriber, whether the other task had run)

    async def other_task() -> None:
        nonlocal other_task_ran
        await first_written.wait()
        other_task_ran = True

    def writer(index: int) -> Callable[[TickPass], bool]:
        def write_nowait(tick: TickPass) -> bool:
            first_written.set()
            seen.append((index, other_task_ran))
            if len(seen) == 4:
                all_written.set()
            return False  # hand back after one write

        return write_nowait

    async with serving(hub) as nursery:
        nursery.start_soon(other_task)
        sender = hub.subscribe().subscriber
        for index in range(4):  # parked in this order
            nursery.start_soon(hub.park, hub.subscribe(batch=True).subscriber, writer(index))
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(TIMEOUT):
            await hub.submit(sender, Publish("go"))
            await all_written.wait()
        assert [index for index, _ in seen] == [0, 1, 2, 3]  # one pass, in parking order
        assert seen[0] == (0, False)
        # The task woken by the first write runs at the next checkpoint, before or after the
        # second write (trio picks the order): in any case before the third.
        assert all(ran for _, ran in seen[2:])


async def test_leaving_and_shutdown_end_a_park(autojump_clock: trio.testing.MockClock) -> None:
    hub = make_hub(write_delay=0.05)
    ended: list[str] = []

    async def park(name: str, subscriber: Subscriber) -> None:
        await hub.park(subscriber, Writes(stay_for=10**9))
        ended.append(name)

    async with serving(hub) as nursery:
        leaving = hub.subscribe(batch=True).subscriber
        staying = hub.subscribe(batch=True).subscriber
        nursery.start_soon(park, "leaving", leaving)
        nursery.start_soon(park, "staying", staying)
        await trio.sleep(1)
        assert ended == []
        hub.unsubscribe(leaving)
        await trio.testing.wait_all_tasks_blocked()
        assert ended == ["leaving"]
        assert not hub.can_park(leaving)
        hub.close_all()
        await trio.testing.wait_all_tasks_blocked()
        assert ended == ["leaving", "staying"]
        # Shutting down: nobody parks any more.
        assert not hub.can_park(staying)
        writes = Writes(stay_for=10**9)
        with trio.fail_after(TIMEOUT):
            await hub.park(staying, writes)
        assert writes.times == []


async def test_without_a_write_delay_park_returns_at_once() -> None:
    hub = make_hub(write_delay=0)
    async with serving(hub):
        subscriber = hub.subscribe(batch=True).subscriber
        assert not hub.can_park(subscriber)
        writes = Writes(stay_for=10**9)
        with trio.fail_after(TIMEOUT):
            await hub.park(subscriber, writes)
        assert writes.times == []


async def test_parked_subscribers_get_what_was_broadcast_meanwhile_at_the_next_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.05)
    async with serving(hub) as nursery:
        publisher, first, second, awake = (hub.subscribe(batch=True).subscriber for _ in range(4))
        drains = {subscriber: Drains(subscriber, 3) for subscriber in (publisher, first, second)}
        for subscriber, drain in drains.items():
            nursery.start_soon(hub.park, subscriber, drain)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(TIMEOUT):
            await hub.submit(awake, Publish("a1"))  # a pass at once; then a pause
            await trio.testing.wait_all_tasks_blocked()
            assert all(drain.kinds(0) == [("message", 1)] for drain in drains.values())
            assert (await take(awake)).seq == 1  # its ack
            await hub.submit(publisher, Publish("p2"))
            await hub.submit(awake, Publish("a3"))
            await hub.submit(publisher, Publish("p4"))
            await trio.testing.wait_all_tasks_blocked()
            # An awake subscriber has them at once; parked ones get them from the next pass.
            assert [(await take(awake)).seq for _ in range(3)] == [2, 3, 4]
            assert all(len(drain.found) == 1 for drain in drains.values())
            assert all(subscriber.queued == 0 for subscriber in drains)  # left to the tick
            assert hub.statistics().outbox_depth_max == 3
            await trio.sleep(0.05)
            await trio.testing.wait_all_tasks_blocked()
        found = [drain.found[1] for drain in drains.values()]
        assert all(len(bundles) == 1 for bundles in found)
        assert found[1][0] is found[2][0]  # built once for both
        assert drains[first].kinds(1) == [("message", 2), ("message", 3), ("message", 4)]
        assert drains[publisher].kinds(1) == [("ack", 2), ("message", 3), ("ack", 4)]
        # a1 to 3; p2..p4 to the awake one (not its own) and to the others
        assert hub.statistics().deliveries == 3 + 2 + 2 * 3 + 1

        with trio.fail_after(TIMEOUT):
            await trio.sleep(0.05)
            await hub.submit(awake, Publish("a5"))  # the third pass: each hands back after it
            await trio.testing.wait_all_tasks_blocked()
        assert all(drain.kinds(2) == [("message", 5)] for drain in drains.values())
        await hub.submit(awake, Publish("a6"))  # all awake again: queued at once
        await trio.testing.wait_all_tasks_blocked()
        assert all([entry.seq for entry in queued(s)] == [6] for s in drains)
        assert all(len(drain.found) == 3 for drain in drains.values())


async def test_a_reply_hands_a_parked_subscriber_back_after_what_was_deferred_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.05)
    async with serving(hub) as nursery:
        sender, parked = (hub.subscribe(batch=True).subscriber for _ in range(2))
        drain = Drains(parked, stay_for=10**9)
        ended = trio.Event()

        async def park() -> None:
            await hub.park(parked, drain)
            ended.set()

        nursery.start_soon(park)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(TIMEOUT):
            await hub.submit(sender, Publish("m1"))  # written by a pass at once
            await trio.testing.wait_all_tasks_blocked()
            await hub.submit(sender, Publish("m2"))  # deferred: the tick pauses
            await trio.testing.wait_all_tasks_blocked()
            hub.reply(parked, '{"type":"error"}')
            await ended.wait()
            await hub.submit(sender, Publish("m3"))  # awake again: queued at once
            await trio.testing.wait_all_tasks_blocked()
        assert drain.kinds(0) == [("message", 1)]
        assert len(drain.found) == 1
        frames = [json.loads(entry.frame) for entry in queued(parked)]
        assert [(frame["type"], frame.get("seq")) for frame in frames] == [
            ("message", 2),
            ("error", None),
            ("message", 3),
        ]


async def test_a_parked_subscriber_that_falls_too_far_behind_is_evicted_at_the_next_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = make_hub(write_delay=0.05, outbox_messages=4)
    async with serving(hub) as nursery:
        sender, parked, keeps_up = (hub.subscribe(batch=True).subscriber for _ in range(3))
        nursery.start_soon(hub.park, parked, Drains(parked, stay_for=10**9))
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(TIMEOUT):
            for index in range(6):  # the first at once; five, more than its outbox holds, later
                await hub.submit(sender, Publish(f"m{index}"))
                assert (await take(keeps_up)).seq == index + 1
                assert json.loads((await take(sender)).frame)["type"] == "ack"
            assert parked.closing is None
            await trio.sleep(0.05)
            await trio.testing.wait_all_tasks_blocked()
        assert isinstance(parked.closing, SlowConsumerError)
        assert outbox_closed(parked)
        assert keeps_up.closing is None
        assert hub.statistics().evictions == {"slow_consumer": 1}
