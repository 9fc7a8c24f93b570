"""What the hub hands a connection: bundles of encoded events, through a bounded outbox.

A :class:`Bundle` is the unit of fan-out: the events accepted in one broadcaster wakeup, shared by
every subscriber that gets the same ones, with their wire bytes built once for all of them. An
:class:`Outbox` is one subscriber's queue of bundles: the hub puts, the connection's writer takes,
and the outbox alone keeps the count of events and bytes waiting, against its limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


FLUSH = Bundle(())  # no events: wakes a writer to finish a frame the socket took only in part


class Outbox:
    """One subscriber's bounded queue of bundles.

    The hub owns the putting side and closes it when the subscriber leaves; the connection's
    writer owns the taking side. Counts of what waits (:attr:`events`, :attr:`bytes`) change only
    here, when a bundle goes in or comes out.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        # Unbounded as a channel: the limits are counted in events and bytes, not bundles.
        self._send, self._receive = trio.open_memory_channel[Bundle](math.inf)
        self._max_events = max_events  # outbox_messages
        self._max_bytes = max_bytes  # outbox_bytes
        self.events = 0  # events waiting
        self.bytes = 0  # UTF-8 bytes waiting

    def put_nowait(self, bundle: Bundle) -> bool:
        """Queue ``bundle`` unless that would pass a limit; never blocks.

        Returns False, queuing nothing, when it would not fit: the subscriber is too slow. A
        bundle put after :meth:`close` is dropped (True: nobody is there to be slow).
        """
        events = len(bundle.entries)
        if self.events + events > self._max_events or self.bytes + bundle.size > self._max_bytes:
            return False
        try:
            self._send.send_nowait(bundle)
        except trio.ClosedResourceError:
            return True
        self.events += events
        self.bytes += bundle.size
        return True

    def take_nowait(self) -> list[Bundle]:
        """Everything queued now (maybe nothing); never blocks."""
        bundles: list[Bundle] = []
        receive_nowait = self._receive.receive_nowait
        while True:
            try:
                bundle = receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self.events -= len(bundle.entries)
            self.bytes -= bundle.size
            bundles.append(bundle)
        return bundles

    async def take(self) -> list[Bundle]:
        """Wait for at least one bundle, then take everything queued. A checkpoint.

        Raises:
            trio.EndOfChannel: the outbox was closed and nothing is left in it.
        """
        first = await self._receive.receive()
        self.events -= len(first.entries)
        self.bytes -= first.size
        return [first, *self.take_nowait()]

    @property
    def empty(self) -> bool:
        return self._receive.statistics().current_buffer_used == 0

    def close(self) -> None:
        """The hub's side: nothing more will be put (idempotent)."""
        self._send.close()

    def close_taking(self) -> None:
        """The connection's side: nothing more will be taken (idempotent)."""
        self._receive.close()
