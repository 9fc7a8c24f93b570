"""What the hub hands a connection: bundles of encoded events, through a bounded outbox.

A :class:`Bundle` is the unit of fan-out: the events accepted in one broadcaster wakeup, shared by
every subscriber that gets the same ones, with their wire bytes built once for all of them. An
:class:`Outbox` is one subscriber's queue of bundles: the hub puts, the connection's writer takes,
and the outbox alone keeps the count of events and bytes waiting, against its limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from ..wire.frames import text_frame
from ..wire.protocol import Outgoing, encode_batch


class Bundle:
    """Events queued or written together, in order; shared by every subscriber that gets them.

    Its bytes on the wire (:meth:`wire`) are built on first use and kept: a thousand subscribers
    that get the same bundle share one ``bytes`` object. Hashes by identity.
    """

    __slots__ = ("_wire", "entries", "size")

    def __init__(self, entries: Sequence[Outgoing]) -> None:
        self.entries = tuple(entries)  # the events, oldest first
        self.size = sum(entry.size for entry in self.entries)  # UTF-8 bytes, for outbox_bytes
        self._wire: list[bytes | None] = [None, None]  # plain, batched

    def wire(self, batch: bool) -> bytes:
        """The bundle as a server writes it: one frame per event, or for a client that opted in
        to batched frames, one ``batch`` frame (a lone event as itself)."""
        cached = self._wire[batch]
        if cached is None:
            entries = self.entries
            if batch and len(entries) > 1:
                cached = text_frame(encode_batch([entry.frame for entry in entries]).encode())
            else:
                cached = b"".join(entry.wire for entry in entries)
            self._wire[batch] = cached
        return cached

    def texts(self, batch: bool) -> list[str]:
        """The bundle as text frames, for a transport that cannot write bytes."""
        frames = [entry.frame for entry in self.entries]
        return [encode_batch(frames)] if batch and len(frames) > 1 else frames


FLUSH = Bundle(())  # no events: starts a writer to finish a frame the socket took only in part


class Outbox:
    """One subscriber's bounded queue of bundles.

    The hub owns the putting side and closes it when the subscriber leaves; the connection owns
    the taking side: its writer takes, and ``on_ready`` (set by the connection) starts a writer
    when something is put or the outbox closes, since a client the hub's pass keeps up with has
    no writer task at all. Counts of what waits (:attr:`events`, :attr:`bytes`) change only
    here, when a bundle goes in or comes out.
    """

    __slots__ = (
        "_bundles",
        "_max_bytes",
        "_max_events",
        "_waiter",
        "bytes",
        "closed",
        "events",
        "on_ready",
    )

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._bundles: list[Bundle] = []  # oldest first; limits count events and bytes
        self._max_events = max_events  # outbox_messages
        self._max_bytes = max_bytes  # outbox_bytes
        self._waiter: trio.Event | None = None  # a writer waiting in :meth:`wait`
        self.events = 0  # events waiting
        self.bytes = 0  # UTF-8 bytes waiting
        self.closed = False  # nothing more will be put
        self.on_ready: Callable[[], None] | None = None  # called after each put, and on close

    def put_nowait(self, bundle: Bundle) -> bool:
        """Queue ``bundle`` unless that would pass a limit; never blocks.

        Returns False, queuing nothing, when it would not fit: the subscriber is too slow. A
        bundle put after :meth:`close` is dropped (True: nobody is there to be slow).
        """
        events = len(bundle.entries)
        if self.events + events > self._max_events or self.bytes + bundle.size > self._max_bytes:
            return False
        if self.closed:
            return True
        self._bundles.append(bundle)
        self.events += events
        self.bytes += bundle.size
        self._ready()
        return True

    def take_nowait(self) -> list[Bundle]:
        """Everything queued now (maybe nothing); never blocks."""
        bundles, self._bundles = self._bundles, []
        self.events = self.bytes = 0
        return bundles

    async def wait(self) -> None:
        """Wait until something is queued or the outbox is closed (one waiter at a time).

        A checkpoint.
        """
        if self._bundles or self.closed:
            await trio.lowlevel.checkpoint()
            return
        waiter = self._waiter = trio.Event()
        await waiter.wait()

    @property
    def empty(self) -> bool:
        return not self._bundles

    def close(self) -> None:
        """The hub's side: nothing more will be put (idempotent)."""
        if not self.closed:
            self.closed = True
            self._ready()

    def close_taking(self) -> None:
        """The connection's side: nothing more will be taken or started (idempotent)."""
        self.closed = True
        self.on_ready = None
        self.take_nowait()

    def _ready(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        if self.on_ready is not None:
            self.on_ready()
