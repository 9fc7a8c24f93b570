"""F2's queue between Hypercorn's read loop and the app (``_hypercorn._AppQueue``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from trio_broadcast.server._hypercorn import _AppQueue

TIMEOUT = 5.0  # seconds; only reached when a test is broken


async def test_events_arrive_in_order_and_the_receiver_waits_for_the_next() -> None:
    queue = _AppQueue(10)
    got: list[int] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def receive_three() -> None:
                for _ in range(3):
                    got.append(await queue.receive())

            nursery.start_soon(receive_three)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # nothing put yet: it waits
            for event in (1, 2, 3):
                await queue.put(event)
    assert got == [1, 2, 3]


async def test_a_full_queue_holds_the_read_loop_until_the_app_takes_one() -> None:
    queue = _AppQueue(2)
    put: list[int] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def read_loop() -> None:
                for event in range(3):
                    await queue.put(event)
                    put.append(event)

            nursery.start_soon(read_loop)
            await trio.testing.wait_all_tasks_blocked()
            assert put == [0, 1]  # the third waits for room
            assert await queue.receive() == 0
            await trio.testing.wait_all_tasks_blocked()
            assert put == [0, 1, 2]
            assert [await queue.receive(), await queue.receive()] == [1, 2]


async def test_closing_drops_what_waits_and_unblocks_the_read_loop_for_good() -> None:
    queue = _AppQueue(1)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await queue.put("unread")
            nursery.start_soon(queue.put, "blocked")
            await trio.testing.wait_all_tasks_blocked()
            queue.close()  # the app returned
        for _ in range(100):  # a client that keeps sending after its close
            await queue.put("dropped")
        assert queue._events == []


async def cancelled_while_waiting(wait: Callable[[], Awaitable[object]]) -> None:
    """Run ``wait`` until it blocks, then cancel it; it must not have returned."""
    returned = False

    async def waiter() -> None:
        nonlocal returned
        await wait()
        returned = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert not returned


async def test_a_cancelled_wait_leaves_the_queue_usable() -> None:
    queue = _AppQueue(1)
    with trio.fail_after(TIMEOUT):
        await cancelled_while_waiting(queue.receive)  # the app waits for an event, and gives up
        await queue.put("next")
        assert await queue.receive() == "next"
        await queue.put("fills it")
        # the read loop waits for room, and gives up
        await cancelled_while_waiting(lambda: queue.put("no room"))
        assert await queue.receive() == "fills it"
        await queue.put("room again")
        assert await queue.receive() == "room again"
