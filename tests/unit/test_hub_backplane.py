"""The hub with a backplane, driven through an in-memory log: who gets an ack, who an error,
when Redis's reply to an append is lost before or after the reader saw the entry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from support import take_bundles

from trio_broadcast.errors import BackplaneUnavailableError
from trio_broadcast.server import replica as replica_module
from trio_broadcast.server.backplane import AppendRequest, ReadTo, Record
from trio_broadcast.server.config import Settings
from trio_broadcast.server.hub import Hub, Subscriber
from trio_broadcast.server.replica import BackplaneState
from trio_broadcast.wire.protocol import Publish

TIMEOUT = 5.0  # seconds; only reached when a test is broken


class MemoryLog:
    """A :class:`~trio_broadcast.server.backplane.Backplane` in memory, with faults on demand."""

    def __init__(self) -> None:
        self.entries: list[Record] = []
        self.epoch = "e1"
        self.fault: str | None = None  # the next append: "before", "after", "after-read"
        self.reads = 0  # read() calls that returned entries
        self.counts: dict[str, int] = {}  # node -> connections, as reported
        self.held = False  # reads wait (a reader far behind) until release_reads()
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        yield

    async def ensure_epoch(self, candidate: str, read_to: ReadTo) -> str:
        await trio.lowlevel.checkpoint()
        return self.epoch

    async def newest(self, count: int) -> list[Record]:
        await trio.lowlevel.checkpoint()
        return self.entries[-max(1, count) :]

    async def read(self, after: str, count: int) -> list[Record]:
        done = int(after.partition("-")[0])
        while self.held or len(self.entries) <= done:
            await self._changed.wait()
        self.reads += 1
        self._notify()
        return self.entries[done : done + count]

    def release_reads(self) -> None:
        self.held = False
        self._notify()

    async def report(self, node: str, connections: int, ttl: float) -> tuple[int, str | None]:
        await trio.lowlevel.checkpoint()
        self.counts[node] = connections
        return sum(self.counts.values()), self.epoch

    async def trim(self) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def append(
        self,
        candidate_epoch: str,
        read_to: ReadTo,
        node: str,
        timestamp: str,
        requests: Sequence[AppendRequest],
    ) -> str:
        await trio.lowlevel.checkpoint()
        fault, self.fault = self.fault, None
        if fault == "before":
            raise BackplaneUnavailableError("connection refused")
        reads = self.reads
        for request in requests:
            seq = len(self.entries) + 1
            self.entries.append(
                Record(
                    seq, request.message, request.sender, timestamp, node, request.key, f"{seq}-1"
                )
            )
        self._notify()
        if fault == "after-read":  # the reader delivers it before the failure surfaces
            while self.reads == reads:
                await self._changed.wait()
        if fault is not None:
            raise BackplaneUnavailableError("connection lost before the reply")
        return self.epoch


_taken: dict[Subscriber, list[dict[str, Any]]] = {}  # taken from an outbox, not yet looked at


async def frames(subscriber: Subscriber, count: int) -> list[dict[str, Any]]:
    """The next ``count`` frames queued for ``subscriber``."""
    got = _taken.setdefault(subscriber, [])
    while len(got) < count:
        for bundle in await take_bundles(subscriber):
            got += [json.loads(entry.frame) for entry in bundle.entries]
    wanted, got[:] = got[:count], got[count:]
    return wanted


@asynccontextmanager
async def running_hub(log: MemoryLog) -> AsyncIterator[Hub]:
    hub = Hub(Settings(), server_name="trio-broadcast/test", backplane=log)
    with trio.fail_after(TIMEOUT):
        await hub.wait_for_backplane()
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            yield hub
            hub.close_all()


async def test_the_author_gets_its_ack_from_the_reader_and_others_the_message() -> None:
    log = MemoryLog()
    async with running_hub(log) as hub:
        author, other = hub.subscribe().subscriber, hub.subscribe().subscriber
        assert hub.epoch == "e1"
        await hub.submit(author, Publish("hi", id="p1"))
        (ack,) = await frames(author, 1)
        (message,) = await frames(other, 1)
    assert (ack["type"], ack["seq"], ack["id"]) == ("ack", 1, "p1")
    assert (message["type"], message["seq"], message["message"]) == ("message", 1, "hi")
    assert message["sender"] == author.client_id


@pytest.mark.parametrize("fault", ["before", "after"])
async def test_an_append_that_fails_is_answered_with_an_error(fault: str) -> None:
    log = MemoryLog()
    async with running_hub(log) as hub:
        author, other = hub.subscribe().subscriber, hub.subscribe().subscriber
        log.fault = fault
        await hub.submit(author, Publish("lost?", id="p1"))
        (error,) = await frames(author, 1)
        assert (error["type"], error["code"], error["id"]) == (
            "error",
            "backplane_unavailable",
            "p1",
        )
        if fault == "before":  # (after a lost reply the reader's next read says UP again)
            assert hub.backplane_state is BackplaneState.DOWN
        if fault == "after":  # Redis ran it: it is broadcast once, and its author sees it too
            (own,) = await frames(author, 1)
            (message,) = await frames(other, 1)
            assert own == message
            assert (message["seq"], message["sender"]) == (1, author.client_id)
        await hub.submit(author, Publish("next", id="p2"))
        (ack,) = await frames(author, 1)
        assert (ack["type"], ack["id"], ack["seq"]) == ("ack", "p2", 2 if fault == "after" else 1)
        assert hub.statistics().errors == {"backplane_unavailable": 1}


async def test_a_failure_after_the_reader_delivered_the_entry_is_not_an_error() -> None:
    log = MemoryLog()
    async with running_hub(log) as hub:
        author = hub.subscribe().subscriber
        log.fault = "after-read"
        await hub.submit(author, Publish("made it", id="p1"))
        await hub.submit(author, Publish("then", id="p2"))
        first, second = await frames(author, 2)
    assert (first["type"], first["id"], first["seq"]) == ("ack", "p1", 1)
    assert (second["type"], second["id"], second["seq"]) == ("ack", "p2", 2)
    assert hub.statistics().errors == {}


async def test_the_appender_waits_while_its_own_entries_are_max_ahead_of_its_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The log is trimmed to a length: entries appended far ahead of the reader could be gone
    # before it reads them, lost to every client of the node.
    monkeypatch.setattr(replica_module, "MAX_AHEAD", 3)
    log = MemoryLog()
    log.held = True
    async with running_hub(log) as hub:
        author, other = hub.subscribe().subscriber, hub.subscribe().subscriber
        for number in range(5):
            await hub.submit(author, Publish(f"m{number}"))
            await trio.testing.wait_all_tasks_blocked()  # one append each, while it can
        assert [entry.message for entry in log.entries] == ["m0", "m1", "m2"]
        log.release_reads()
        got = await frames(other, 5)
        assert [frame["message"] for frame in got] == [f"m{number}" for number in range(5)]
        assert [frame["seq"] for frame in got] == [1, 2, 3, 4, 5]


async def test_the_cluster_count_adds_every_node_reported() -> None:
    log = MemoryLog()
    log.counts["elsewhere"] = 5
    async with running_hub(log) as hub:
        hub.subscribe()
        hub.subscribe()
        await hub.wait_until(lambda: hub.cluster_connections == 5 + 2)
        assert hub.replica is not None
        assert log.counts[hub.replica.node_id] == 2
        assert hub.statistics().cluster_connections == 7
