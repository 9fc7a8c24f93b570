"""``trio-broadcast bench``: a load generator that measures the server, not itself.

Shape of a run::

    coordinator (this process, no trio)          worker processes (trio, W of them)
    ───────────────────────────────────          ─────────────────────────────────
    [--spawn: start the server subprocess]
    start W workers ───────────────────────────▶ open their share of S subscribers,
                                                 P publishers, Q stalled subscribers
    wait until every worker is connected ◀────── "connected" (+ per-connection times)
    "start at T0" ─────────────────────────────▶ publishers send for D seconds
    progress line every second ◀──────────────── progress counters every second
    wait for "published" ◀────────────────────── last acked seq, intake
    "drain until seq X" ───────────────────────▶ subscribers read until they reach X
    aggregate, print table or JSON ◀──────────── counters, latency histogram, CPU time

One clock for latency: a publisher puts ``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by every
process on the machine) into the message text right before it writes the frame
(:meth:`RawWebSocket.send_stamped`); a subscriber subtracts it from its own
``time.monotonic_ns()`` when the frame arrives. Each distinct frame is decoded once per worker,
and latencies go into a log-linear histogram (under 0.8 % resolution) after the run, so the hot
path is a dict lookup and a few integer operations per frame.

Subscribers here are lean readers (:class:`RawWebSocket`), not the full
:mod:`trio_broadcast.client`: they check seq continuity (gaps, duplicates) and latency, and
nothing else, so that the bench stays far from being the bottleneck. Its own CPU use is
reported next to the results.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import cProfile
import gc
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import queue
import secrets
import select
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import attrs
import trio

from ..client.state import InvalidURLError, connect_url, websocket_url
from ..histogram import bucket_floor, bucket_of, percentile
from ..wire.frames import ZERO_MASK, client_text_frame, frame_header, upgrade_request

LISTENING_PREFIX = "trio-broadcast listening on "  # the server's one stdout line when ready
CONNECT_CONCURRENCY = 100  # handshakes in flight per worker
PROGRESS_INTERVAL = 1.0  # seconds between progress reports
START_MARGIN = 0.3  # seconds between the start command and T0, for every worker to get it
SERVER_START_TIMEOUT = 30.0  # seconds for a spawned server to print its line
RECEIVE_BYTES = 64 * 1024  # read size per receive call
FRAME_CACHE_SIZE = 4096  # distinct frames remembered (decoded once for every subscriber)
FRAME_KEY_CHARS = 96  # a cached frame is found by its length and this much of each end
ARRIVALS_FOLD = 1 << 20  # recorded arrivals before they are folded into the histogram


# -- a minimal WebSocket client ----------------------------------------------------------------


class WebSocketEnded(Exception):
    """The connection is over; ``code`` is the close code (1006: no close frame)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class HandshakeFailedError(Exception):
    """The server did not switch protocols."""


class RawWebSocket:
    """Just enough of a WebSocket client for the bench: text frames in and out, pings answered,
    close handled. One ``receive`` returns every message that arrived in one read, so a burst
    of frames costs one task switch, not one per frame (trio-websocket spends on the order of
    100 µs of CPU per frame, which would make the bench the bottleneck).

    Outgoing frames are masked with the all-zero key: valid on the wire (the key is the
    client's to choose) and free of the per-byte XOR, which measures nothing about the server.
    """

    def __init__(self, stream: trio.abc.Stream, buffered: bytes) -> None:
        self.stream = stream
        self.buffer = bytearray(buffered)  # received, not yet parsed
        self.close_code: int | None = None  # set once the server's close frame arrived
        self._fragments: list[bytes] = []  # a fragmented message in progress
        self._control: list[bytes] = []  # pong / close replies to send
        self._send_lock = trio.Lock()  # a publisher's sends and its reader's pongs
        self.pending: list[str] = []  # complete messages not yet handed out

    @classmethod
    async def connect(cls, url: str) -> RawWebSocket:
        """Open ``url`` (ws:// or wss://) and complete the opening handshake.

        Raises:
            OSError: cannot connect.
            HandshakeFailedError: the server answered with something other than 101.
        """
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        stream: trio.abc.Stream
        if secure:
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl.create_default_context(), https_compatible=True
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
        try:
            rest = await cls._handshake(stream, parts.netloc, parts.path, parts.query)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream, rest)

    @staticmethod
    async def _handshake(stream: trio.abc.Stream, netloc: str, path: str, query: str) -> bytes:
        """Send the upgrade request, check the 101; returns what came after the headers."""
        target = path + (f"?{query}" if query else "")
        await stream.send_all(upgrade_request(netloc, target))
        head = bytearray()
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise HandshakeFailedError("the server closed the connection")
            head += data
        header, _, rest = bytes(head).partition(b"\r\n\r\n")
        status = header.split(b"\r\n", 1)[0].decode("latin-1")
        if not status.startswith("HTTP/1.1 101"):
            raise HandshakeFailedError(status)
        return rest

    def fileno(self) -> int:
        """The socket's file descriptor (the bench reads it directly; see _multiplex)."""
        stream = self.stream
        assert isinstance(stream, trio.SocketStream), "TLS connections are read by receive()"
        return stream.socket.fileno()

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.stream.send_all(client_text_frame(text.encode()))

    async def send_stamped(self, make_text: Callable[[int], str]) -> int:
        """Send ``make_text(now)`` as a text frame, ``now`` being ``time.monotonic_ns()`` read
        when nothing stands between it and the write. Returns ``now``.

        Taking the send lock yields to the scheduler: with the clock read before it, the
        bench's own busy moments (its reader handling a burst of frames) would count as the
        server's latency. The write itself is attempted at once.
        """
        async with self._send_lock:
            now = time.monotonic_ns()
            await self.stream.send_all(client_text_frame(make_text(now).encode()))
        return now

    async def receive(self) -> list[str]:
        """The text messages complete now; waits for at least one.

        Raises:
            WebSocketEnded: the connection is over.
        """
        if self.pending:
            messages, self.pending = self.pending, []
            return messages
        while True:
            messages = self._parse()
            if self._control:
                await self._send_control()
            if messages:
                return messages
            if self.close_code is not None:
                raise WebSocketEnded(self.close_code)
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.close_code = 1006
                raise WebSocketEnded(1006)
            self.buffer += data

    def _parse(self) -> list[str]:
        buffer = self.buffer
        size = len(buffer)
        offset = 0
        messages: list[str] = []
        while size - offset >= 2 and self.close_code is None:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            payload = bytes(buffer[start:end])
            offset = end
            opcode = first & 0x0F
            if opcode in (0x0, 0x1, 0x2):  # continuation, text (binary: the server sends none)
                if first & 0x80:
                    if self._fragments:
                        payload = b"".join([*self._fragments, payload])
                        self._fragments.clear()
                    messages.append(payload.decode())
                else:
                    self._fragments.append(payload)
            elif opcode == 0x9:  # ping
                self._control.append(self._frame(0xA, payload))
            elif opcode == 0x8:  # close
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._control.append(self._frame(0x8, payload[:2]))
        del buffer[:offset]
        return messages

    @staticmethod
    def _frame(opcode: int, payload: bytes) -> bytes:
        return frame_header(len(payload), opcode=opcode, mask=ZERO_MASK) + payload

    async def _send_control(self) -> None:
        frames, self._control = b"".join(self._control), []
        async with self._send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.send_all(frames)

    async def aclose(self, code: int = 1000) -> None:
        """Send a close frame (unless the server closed first) and close the socket."""
        with trio.move_on_after(1) as scope:
            scope.shield = True
            if self.close_code is None:
                self._control.append(self._frame(0x8, struct.pack("!H", code)))
                await self._send_control()
        await trio.aclose_forcefully(self.stream)


OPEN_ERRORS = (OSError, HandshakeFailedError, WebSocketEnded, trio.TooSlowError, ValueError)


# -- what travels between processes (pickled) --------------------------------------------------


@attrs.frozen
class WorkerSpec:
    """One worker's share of the load."""

    index: int  # worker number
    url: str  # the WebSocket URL, batch parameter included
    run_id: str  # marks this run's messages
    subscribers: int  # healthy subscribers in this worker
    publishers: list[int]  # global publisher numbers handled here
    stalled: int  # subscribers that never read
    rate: float | None  # messages/s per publisher; None: as fast as the server takes
    window: int  # unacknowledged messages per publisher in max mode
    size: int  # message text length, characters
    total_publishers: int  # publishers over all workers (to stagger their schedules)
    duration: float  # seconds of publishing
    drain_timeout: float  # seconds publishers wait for their acks after publishing
    connect_timeout: float  # seconds per connection


@attrs.define
class WorkerResult:
    """What a worker measured; summed over workers by the coordinator."""

    index: int
    connect_ms: list[float] = attrs.Factory(list)  # handshake + welcome, per connection
    connect_wall_s: float = 0.0  # from the first handshake to the last welcome
    connect_failed: int = 0
    sent: int = 0  # publish frames sent
    acked: int = 0  # acks received (messages accepted)
    expected_messages: int = 0  # acked messages with a seq up to the drain target
    first_seq: int | None = None  # lowest acked seq
    last_seq: int | None = None  # highest acked seq
    delivered: int = 0  # this run's messages received by healthy subscribers
    frames: int = 0  # frames received by healthy subscribers
    events: int = 0  # events in those frames (this run's messages or not)
    gaps: int = 0  # seq jumps seen by healthy subscribers
    missing: int = 0  # seqs skipped by those jumps
    duplicates: int = 0  # seqs seen twice
    evicted: int = 0  # healthy subscribers closed with 4008
    stalled_evicted: int = 0  # stalled subscribers found closed with 4008
    stalled_dropped: int = 0  # stalled subscribers found dropped another way
    closes: dict[int, int] = attrs.Factory(dict)  # unexpected close codes of healthy ones
    errors: dict[str, int] = attrs.Factory(dict)  # by kind
    latency: dict[int, int] = attrs.Factory(dict)  # histogram buckets (µs)
    last_receive_ns: int = 0  # monotonic ns of the last delivery
    publish_lag_ms: float = 0.0  # how far publishers fell behind their schedule, worst case
    cpu_s: float = 0.0  # this process's CPU time during the run


# -- worker ------------------------------------------------------------------------------------


async def _expect_welcome(ws: RawWebSocket) -> None:
    first, *ws.pending = await ws.receive()
    welcome = json.loads(first)
    if welcome.get("type") != "welcome":
        raise HandshakeFailedError(f"expected a welcome frame, got {welcome!r:.80}")


class _Frame:
    """What the bench needs of one received frame, decoded once however many subscribers
    receive the same text."""

    __slots__ = ("contiguous", "events", "sent_by_message", "sent_ns", "seqs")

    def __init__(self, seqs: list[int], sent_by_message: list[int | None], events: int) -> None:
        self.seqs = seqs  # of its message events, in order
        self.sent_by_message = sent_by_message  # send time (ns) of each, None if not this run's
        self.sent_ns = tuple(sent for sent in sent_by_message if sent is not None)
        self.events = events  # events of any type
        self.contiguous = bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    @classmethod
    def decode(cls, text: str, prefix: str) -> _Frame:
        data = json.loads(text)
        events = data["events"] if data["type"] == "batch" else (data,)
        seqs: list[int] = []
        sent_by_message: list[int | None] = []
        skip = len(prefix)
        for event in events:
            if event["type"] != "message":
                continue
            seqs.append(event["seq"])
            message = event["message"]
            sent = None
            if message.startswith(prefix):
                sent = int(message[skip : message.index(":", skip)])
            sent_by_message.append(sent)
        return cls(seqs, sent_by_message, len(events))


class _Subscriber:
    """A healthy subscriber, read by the worker's multiplexer."""

    __slots__ = ("ended", "fd", "last", "slot", "ws")

    def __init__(self, ws: RawWebSocket, slot: int) -> None:
        self.ws = ws
        self.slot = slot  # index in the worker's positions
        self.fd = ws.fileno()
        self.last = -1  # the last seq seen
        self.ended = trio.Event()  # the connection is over


class _Tally:
    """A publisher's answers (acks and refusals) against what it sent."""

    def __init__(self) -> None:
        self.answered = 0
        self.last_acked: int | None = None  # seq of the newest ack
        self.sent: int | None = None  # known once publishing has stopped
        self.complete = trio.Event()  # every sent message was answered
        self.finished = False  # the worker counted this publisher as done

    def expect(self, sent: int) -> None:
        self.sent = sent
        self._check()

    def answer(self) -> None:
        self.answered += 1
        self._check()

    def _check(self) -> None:
        if self.sent is not None and self.answered >= self.sent:
            self.complete.set()


class _Worker:
    """The trio side of one worker process."""

    def __init__(self, spec: WorkerSpec, commands: multiprocessing.connection.Connection) -> None:
        self.spec = spec
        self.commands = commands  # from the coordinator
        self.result = WorkerResult(index=spec.index)
        self.prefix = f"{spec.run_id}:"  # starts every message of this run
        self.counts: Counter[int] = Counter()  # latency histogram
        # Frames decoded lately: (text, decoded), by (length, first and last FRAME_KEY_CHARS).
        self.frame_cache: dict[tuple[int, str, str], tuple[str, _Frame]] = {}
        self.arrivals: list[tuple[int, Sequence[int]]] = []  # (received ns, sent ns), unfolded
        self.errors: Counter[str] = Counter()
        self.positions: list[int] = []  # last seq seen, per healthy subscriber
        self.gone: set[int] = set()  # subscriber slots no longer reading
        self.epoll = select.epoll()  # healthy subscribers' sockets, read by _multiplex
        self.watched: dict[int, _Subscriber] = {}  # by file descriptor
        self.started = trio.Event()  # T0 reached
        self.t0_ns = 0
        self.connected = 0  # connections that got their welcome
        self.pending_connects = spec.subscribers + len(spec.publishers) + spec.stalled
        self.all_connected = trio.Event()
        self.publishers_left = len(spec.publishers)
        self.acked_seqs: list[int] = []  # seqs of this worker's acked messages
        self.complete_until: int | None = None  # see _publisher_finished
        self.publishing_done = trio.Event()
        self.drained = trio.Event()  # the run is over: stalled subscribers may read now
        self.stalled_left = spec.stalled
        self.stalled_done = trio.Event()
        self.target: int | None = None  # drain: every subscriber reads up to this seq
        self.behind: set[int] = set()  # subscriber slots not there yet
        self.caught_up = trio.Event()

    async def recv_command(self) -> dict[str, Any]:
        command: dict[str, Any] = await trio.to_thread.run_sync(
            self.commands.recv, abandon_on_cancel=True
        )
        return command

    def _connect_finished(self, started: float | None) -> None:
        if started is not None:
            self.connected += 1
            self.result.connect_ms.append((time.perf_counter() - started) * 1000)
        else:
            self.result.connect_failed += 1
        self.pending_connects -= 1
        if self.pending_connects == 0:
            self.all_connected.set()

    @contextlib.asynccontextmanager
    async def _open(self, limiter: trio.Semaphore) -> Any:
        """A connection whose welcome has arrived; at most ``limiter`` handshakes at once."""
        await limiter.acquire()
        started = time.perf_counter()
        ws: RawWebSocket | None = None
        try:
            with trio.fail_after(self.spec.connect_timeout):
                ws = await RawWebSocket.connect(self.spec.url)
                await _expect_welcome(ws)
        except BaseException:
            limiter.release()
            self._connect_finished(None)
            if ws is not None:
                await ws.aclose()
            raise
        limiter.release()
        self._connect_finished(started)
        try:
            yield ws
        finally:
            await ws.aclose()

    async def subscriber(self, limiter: trio.Semaphore) -> None:
        slot = len(self.positions)
        self.positions.append(-1)
        try:
            async with self._open(limiter) as ws:
                subscriber = _Subscriber(ws, slot)
                self._watch(subscriber)
                try:
                    await subscriber.ended.wait()
                finally:
                    self._unwatch(subscriber)
        except OPEN_ERRORS as error:
            self.errors[f"connect: {type(error).__name__}"] += 1
        finally:
            self.gone.add(slot)
            self._arrived(slot)

    def _arrived(self, slot: int) -> None:
        """Subscriber ``slot`` reached the drain target (or stopped reading)."""
        if slot in self.behind:
            self.behind.discard(slot)
            if not self.behind:
                self.caught_up.set()

    def _watch(self, subscriber: _Subscriber) -> None:
        self.watched[subscriber.fd] = subscriber
        self.epoll.register(subscriber.fd, select.EPOLLIN)
        if subscriber.ws.pending:  # arrived together with the welcome
            frames, subscriber.ws.pending = subscriber.ws.pending, []
            self._consume(subscriber, frames, time.monotonic_ns())

    def _unwatch(self, subscriber: _Subscriber) -> None:
        if self.watched.pop(subscriber.fd, None) is not None:
            self.epoll.unregister(subscriber.fd)

    def _end(self, subscriber: _Subscriber, code: int) -> None:
        if code == 4008:
            self.result.evicted += 1
        elif self.target is None:  # closes after the run are ours
            self.result.closes[code] = self.result.closes.get(code, 0) + 1
        self._unwatch(subscriber)
        subscriber.ended.set()

    async def _multiplex(self) -> None:
        """Read every healthy subscriber from one task.

        The sockets sit in an epoll set of their own (level-triggered, registered once); one
        wakeup serves every socket that has data. One trio task per subscriber would cost a
        wakeup, two epoll_ctl calls and a task switch per frame per subscriber.
        """
        epoll = self.epoll
        watched = self.watched
        read = os.read
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            now = time.monotonic_ns()
            replies: list[RawWebSocket] = []
            for fd, _ in epoll.poll(0):
                subscriber = watched.get(fd)
                if subscriber is None:
                    continue
                try:
                    data = read(fd, RECEIVE_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                ws = subscriber.ws
                if not data:
                    self._end(subscriber, ws.close_code or 1006)
                    continue
                ws.buffer += data
                frames = ws._parse()
                if frames:
                    self._consume(subscriber, frames, now)
                if ws._control:
                    replies.append(ws)
                if ws.close_code is not None:
                    self._end(subscriber, ws.close_code)
            for ws in replies:
                await ws._send_control()

    def _consume(self, subscriber: _Subscriber, frames: list[str], now: int) -> None:
        """The hot path: a dict lookup per frame, a few integer operations per frame.

        The server writes the same frame to every subscriber that keeps up, so each distinct
        frame is decoded once (:class:`_Frame`) and its arrival recorded as ``(now, frame)``.
        The cache is keyed by the frame's length and ends, not its text: hashing a whole frame
        of a hundred events costs more than comparing it with the one found (a memcmp).
        Latencies become histogram counts later (:meth:`_fold_arrivals`). A frame whose seqs
        do not simply continue the subscriber's is checked message by message.
        """
        result = self.result
        cache = self.frame_cache
        arrivals = self.arrivals
        last = subscriber.last
        result.frames += len(frames)
        for text in frames:
            key = (len(text), text[:FRAME_KEY_CHARS], text[-FRAME_KEY_CHARS:])
            cached = cache.get(key)
            if cached is not None and cached[0] == text:  # the same frame: reuse its decoding
                frame = cached[1]
            else:
                if len(cache) >= FRAME_CACHE_SIZE:
                    cache.clear()
                frame = _Frame.decode(text, self.prefix)
                cache[key] = (text, frame)
            result.events += frame.events
            seqs = frame.seqs
            if not seqs:
                continue
            if frame.contiguous and (last < 0 or seqs[0] == last + 1):
                last = seqs[-1]
                if frame.sent_ns:
                    arrivals.append((now, frame.sent_ns))
                    result.delivered += len(frame.sent_ns)
                    result.last_receive_ns = now
            else:
                last = self._consume_messages(frame, last, now)
        subscriber.last = last
        self.positions[subscriber.slot] = last
        if self.target is not None and last >= self.target:
            self._arrived(subscriber.slot)
        if len(arrivals) >= ARRIVALS_FOLD:
            self._fold_arrivals()

    def _consume_messages(self, frame: _Frame, last: int, now: int) -> int:
        """Check one frame message by message: gaps, duplicates. Returns the new last seq."""
        result = self.result
        for seq, sent_ns in zip(frame.seqs, frame.sent_by_message, strict=True):
            if last >= 0 and seq != last + 1:
                if seq <= last:
                    result.duplicates += 1
                    continue
                result.gaps += 1
                result.missing += seq - last - 1
            last = seq
            if sent_ns is not None:
                self.arrivals.append((now, (sent_ns,)))
                result.delivered += 1
                result.last_receive_ns = now
        return last

    def _fold_arrivals(self) -> None:
        """Turn the recorded arrivals into latency histogram counts."""
        counts = self.counts
        for now, sent in self.arrivals:
            for sent_ns in sent:
                counts[bucket_of((now - sent_ns) // 1000)] += 1
        self.arrivals.clear()

    async def stalled_subscriber(self, limiter: trio.Semaphore) -> None:
        try:
            async with self._open(limiter) as ws:
                await self.drained.wait()  # never reads until the run is over
                await self._learn_fate(ws)
        except OPEN_ERRORS as error:
            self.errors[f"connect: {type(error).__name__}"] += 1
        finally:
            self.stalled_left -= 1
            if self.stalled_left == 0:
                self.stalled_done.set()

    async def _learn_fate(self, ws: RawWebSocket) -> None:
        """After the run: read what piled up, to see whether the server evicted it."""
        with trio.move_on_after(10):
            while True:
                with trio.move_on_after(0.5) as idle:
                    try:
                        await ws.receive()
                    except WebSocketEnded as ended:
                        if ended.code == 4008:
                            self.result.stalled_evicted += 1
                        else:
                            self.result.stalled_dropped += 1
                        return
                if idle.cancelled_caught:
                    return  # caught up and still open: not evicted

    async def publisher(self, limiter: trio.Semaphore, number: int) -> None:
        tally = _Tally()
        try:
            with trio.CancelScope() as scope:
                async with self._open(limiter) as ws:
                    window = trio.Semaphore(self.spec.window) if self.spec.rate is None else None
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._read_acks, ws, window, tally)
                        tally.expect(await self._publish(ws, number, window))
                        # Every message is answered (ack or error), in order: once the last
                        # answer is in, everything accepted has been broadcast.
                        with trio.move_on_after(self.spec.drain_timeout):
                            await tally.complete.wait()
                        nursery.cancel_scope.cancel()
                    self._publisher_finished(tally)
                    # The server may never close TCP after its own close frame (seen after a
                    # 1008 with our frames still in flight): bound the closing handshake.
                    scope.deadline = trio.current_time() + 2.0
        except OPEN_ERRORS as error:
            self.errors[f"publisher: {type(error).__name__}"] += 1
        finally:
            self._publisher_finished(tally)

    def _publisher_finished(self, tally: _Tally) -> None:
        if tally.finished:
            return
        tally.finished = True
        if tally.sent is not None and tally.answered < tally.sent and tally.last_acked is not None:
            # Acks come in order: every message of this publisher up to its last ack was
            # accepted, the ones after are unknown. The drain target must not go past this.
            cap = self.complete_until
            self.complete_until = tally.last_acked if cap is None else min(cap, tally.last_acked)
        self.publishers_left -= 1
        if self.publishers_left == 0:
            self.publishing_done.set()

    async def _publish(self, ws: RawWebSocket, number: int, window: trio.Semaphore | None) -> int:
        """Publish from T0 for ``duration`` seconds; returns how many frames were sent."""
        spec = self.spec
        await self.started.wait()
        monotonic_ns = time.monotonic_ns
        head = self.prefix
        end_ns = self.t0_ns + int(spec.duration * 1e9)
        interval_ns = int(1e9 / spec.rate) if spec.rate else 0
        next_ns = self.t0_ns + (number * interval_ns) // max(1, spec.total_publishers)
        sent = 0
        worst_lag = 0

        def message(sent_ns: int) -> str:  # the send time first: subscribers parse it
            text = f"{head}{sent_ns}:{number}:{sent}:".ljust(spec.size, "x")
            return f'{{"message":"{text}"}}'

        try:
            while True:
                now = monotonic_ns()
                if now >= end_ns:
                    break
                if window is not None:
                    with trio.move_on_after((end_ns - now) / 1e9):
                        await window.acquire()
                    if monotonic_ns() >= end_ns:
                        break
                elif now < next_ns:
                    await trio.sleep((next_ns - now) / 1e9)
                    continue
                else:
                    worst_lag = max(worst_lag, now - next_ns)
                    next_ns += interval_ns
                await ws.send_stamped(message)
                sent += 1
                self.result.sent += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.errors[f"publisher closed: {ws.close_code or 1006}"] += 1
        self.result.publish_lag_ms = max(self.result.publish_lag_ms, worst_lag / 1e6)
        return sent

    async def _read_acks(
        self, ws: RawWebSocket, window: trio.Semaphore | None, tally: _Tally
    ) -> None:
        """Publishers receive every broadcast too; only frames with acks or errors are
        decoded."""
        result = self.result
        loads = json.loads
        while True:
            try:
                frames = await ws.receive()
            except WebSocketEnded:
                return
            events = [
                event
                for frame in frames
                if '"ack"' in frame or '"error"' in frame
                for data in (loads(frame),)
                for event in (data["events"] if data["type"] == "batch" else (data,))
            ]
            for event in events:
                kind = event["type"]
                if kind == "ack":
                    seq = event["seq"]
                    result.acked += 1
                    tally.last_acked = seq
                    self.acked_seqs.append(seq)
                    if result.first_seq is None or seq < result.first_seq:
                        result.first_seq = seq
                    if result.last_seq is None or seq > result.last_seq:
                        result.last_seq = seq
                elif kind == "error":
                    self.errors[f"refused: {event.get('code')}"] += 1
                else:
                    continue
                tally.answer()
                if window is not None:
                    window.release()

    async def progress(self, out: Any) -> None:
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            out.put(
                (
                    "progress",
                    self.spec.index,
                    {
                        "connected": self.connected,
                        "sent": self.result.sent,
                        "acked": self.result.acked,
                        "delivered": self.result.delivered,
                        "evicted": self.result.evicted,
                        "errors": sum(self.errors.values()),
                    },
                )
            )

    async def run(self, out: Any) -> None:
        spec = self.spec
        limiter = trio.Semaphore(CONNECT_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.progress, out)
            nursery.start_soon(self._multiplex)
            for _ in range(spec.subscribers):
                nursery.start_soon(self.subscriber, limiter)
            for number in spec.publishers:
                nursery.start_soon(self.publisher, limiter, number)
            for _ in range(spec.stalled):
                nursery.start_soon(self.stalled_subscriber, limiter)
            connect_started = time.perf_counter()
            if self.pending_connects == 0:
                self.all_connected.set()
            if self.publishers_left == 0:
                self.publishing_done.set()
            if self.stalled_left == 0:
                self.stalled_done.set()
            await self.all_connected.wait()
            self.result.connect_wall_s = time.perf_counter() - connect_started
            out.put(
                (
                    "connected",
                    spec.index,
                    {"connected": self.connected, "wall_s": self.result.connect_wall_s},
                )
            )

            command = await self.recv_command()
            if command.get("cmd") != "start":
                nursery.cancel_scope.cancel()
                return
            # Out of the collector's sight: everything set up so far (a thousand connections),
            # so that collections during the run do not stall this worker's reading for tens of
            # milliseconds, which would count as server latency.
            gc.collect()
            gc.freeze()
            cpu_start = time.process_time()
            self.t0_ns = int(command["t0_ns"])
            await trio.sleep(max(0.0, (self.t0_ns - time.monotonic_ns()) / 1e9))
            self.started.set()
            await self.publishing_done.wait()
            out.put(
                (
                    "published",
                    spec.index,
                    {
                        "last_seq": self.result.last_seq,
                        "complete_until": self.complete_until,
                        "acked": self.result.acked,
                    },
                )
            )

            command = await self.recv_command()
            self.target = command.get("target_seq")
            if self.target is not None:
                self.behind = {
                    slot
                    for slot, position in enumerate(self.positions)
                    if slot not in self.gone and position < self.target
                }
            if not self.behind:
                self.caught_up.set()
            with trio.move_on_after(float(command.get("drain_timeout", 10.0))):
                await self.caught_up.wait()
            self.result.cpu_s = time.process_time() - cpu_start
            if self.target is not None:
                self.result.expected_messages = bisect.bisect_right(
                    sorted(self.acked_seqs), self.target
                )
                # Messages past the target (broadcast, but their ack not in by the end) are
                # not in "expected": do not count them as delivered either. Each subscriber saw
                # a contiguous run of seqs, so they are the last ``position - target``.
                beyond = sum(max(0, position - self.target) for position in self.positions)
                self.result.delivered -= min(beyond, self.result.delivered)
            for subscriber in list(self.watched.values()):
                self._unwatch(subscriber)  # the measurement is over: count nothing more
            out.put(("drained", spec.index, {}))
            self.drained.set()
            with trio.move_on_after(12):
                await self.stalled_done.wait()
            nursery.cancel_scope.cancel()

    def finish(self) -> WorkerResult:
        self._fold_arrivals()
        self.result.latency = dict(self.counts)
        self.result.errors = dict(self.errors)
        return self.result


def _worker_main(spec: WorkerSpec, commands: Any, out: Any) -> None:
    """Entry point of a worker process (spawned: must be importable)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    worker = _Worker(spec, commands)
    profile_to = os.environ.get("TRIO_BROADCAST_BENCH_PROFILE")  # a path prefix: profile workers
    profiler = cProfile.Profile() if profile_to else None
    try:
        if profiler is not None:
            profiler.enable()
        trio.run(worker.run, out)
    except (EOFError, OSError) as error:  # the coordinator went away
        worker.errors[f"worker: {type(error).__name__}"] += 1
    except Exception as error:  # noqa: BLE001 - a bug: say so, still report what was measured
        traceback.print_exc()
        worker.errors[f"worker crashed: {type(error).__name__}"] += 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{spec.index}")
        out.put(("result", spec.index, worker.finish()))


# -- the spawned server ------------------------------------------------------------------------


class SpawnedServer:
    """``python -m trio_broadcast serve`` as a subprocess, stopped with SIGTERM."""

    def __init__(self, args: Sequence[str], *, reference: str | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="trio-broadcast-bench-", suffix=".log", delete=False
        )
        command = [sys.executable, "-m", "trio_broadcast", "serve", "--host", "127.0.0.1"]
        command += ["--port", "0", *args]
        env = None
        if reference == "node":  # the reference peer, with the same load (see reference_ws.mjs)
            command = ["node", str(Path(__file__).with_name("reference_ws.mjs")), "0"]
            env = {**os.environ, "WS_MODULE_DIR": str(_ws_module_dir())}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        stdout: IO[str] = self.process.stdout
        while time.monotonic() < deadline:
            line = stdout.readline()
            if line.startswith(LISTENING_PREFIX):
                return line[len(LISTENING_PREFIX) :].strip()
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the server did not start; its log: {self.log.name}\n{self.tail()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _ws_module_dir() -> Path:
    """Where Node finds the ``ws`` package: $TRIO_BROADCAST_WS_MODULE_DIR, or the UI's
    node_modules (``frontend/`` of a checkout, from the working directory or this package)."""
    configured = os.environ.get("TRIO_BROADCAST_WS_MODULE_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [Path.cwd() / "frontend", Path(__file__).parents[2] / "frontend"]
    for folder in candidates:
        if (folder / "node_modules" / "ws").is_dir():
            return folder / "package.json"
    raise RuntimeError("the reference peer needs the npm package ws: run `npm ci` in frontend/")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's workers), from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children.get(current, [])
    return tree


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and the processes below it (``serve --workers N``
    runs its workers as children), from /proc (Linux); None elsewhere."""
    total, found = 0, False
    for member in _process_tree(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        found = True
    return total / os.sysconf("SC_CLK_TCK") if found else None


def process_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and the processes below it, from /proc (Linux); None
    elsewhere."""
    total, found = 0, False
    for member in _process_tree(pid):
        try:
            with open(f"/proc/{member}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        found = True
                        break
        except OSError:
            continue
    return total if found else None


def machine_ticks() -> tuple[int, int, int] | None:
    """(all, idle + iowait, steal) CPU ticks of the whole machine, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields[:8]), fields[3] + fields[4], steal


def _machine_report(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> dict[str, Any]:
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    if before is not None and after is not None:
        total = max(1, after[0] - before[0])
        report["busy_pct"] = round(100 * (1 - (after[1] - before[1]) / total), 1)
        report["steal_pct"] = round(100 * (after[2] - before[2]) / total, 1)
    return report


def fetch_status(ws_url: str) -> dict[str, Any] | None:
    """The server's ``/api/status`` (counters), or None when it is not reachable."""
    http = ws_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    base = http.split("/ws/", 1)[0]
    try:
        with urllib.request.urlopen(f"{base}/api/status", timeout=3) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- coordinator -------------------------------------------------------------------------------


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _default_workers(spawn: bool) -> int:
    cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - 1 if spawn else cpus))


def run_bench(args: argparse.Namespace) -> int:
    """The ``bench`` command. Exit code 0 on a completed run, 2 on bad usage, 3 when the
    server cannot be reached or started."""
    if (args.url is None) == (not args.spawn):
        print("trio-broadcast bench: give a URL or --spawn (not both)", file=sys.stderr)
        return 2
    if args.rate is not None and args.rate <= 0:
        print("trio-broadcast bench: --rate must be positive", file=sys.stderr)
        return 2
    if args.duration <= 0:
        print("trio-broadcast bench: --duration must be positive", file=sys.stderr)
        return 2
    loadgen: Path | None = None
    if args.driver == "c":  # built before a server is spawned: a missing compiler fails fast
        from .loadgen import LoadgenError, build_loadgen

        try:
            loadgen = build_loadgen()
        except LoadgenError as error:
            print(f"trio-broadcast bench: {error}", file=sys.stderr)
            return 1
    server: SpawnedServer | None = None
    try:
        if args.spawn:
            connections = args.subscribers + args.publishers + args.stalled
            # The bench measures fan-out, not the limiter: no publish rate limit unless asked
            # for (a later --server-arg=--publish-rate=20 wins).
            server_args = ["--log-level", "warning", "--publish-rate", "off"]
            limit = args.max_connections or max(10_000, connections + 100)
            server_args += ["--max-connections", str(limit), *args.server_arg]
            try:
                server = SpawnedServer(server_args, reference=args.reference)
            except RuntimeError as error:
                print(f"trio-broadcast bench: {error}", file=sys.stderr)
                return 3
            url = server.url
        else:
            url = args.url
        try:
            endpoint = connect_url(
                websocket_url(url), since=None, epoch=None, batch=not args.no_batch
            )
        except InvalidURLError as error:
            print(f"trio-broadcast bench: {error}", file=sys.stderr)
            return 2
        if loadgen is not None and not endpoint.startswith("ws://"):
            print(
                "trio-broadcast bench: --driver c speaks ws:// only (no TLS); "
                "use --driver python for wss://",
                file=sys.stderr,
            )
            return 2
        pid = server.pid if server is not None else args.server_pid
        report = _coordinate(args, endpoint, pid, loadgen)
        report["config"]["spawned"] = server is not None
        return _print_report(args, report)  # before stopping the server: that can take a while
    except KeyboardInterrupt:
        return 130
    except RuntimeError as error:
        print(f"trio-broadcast bench: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()


def _print_report(args: argparse.Namespace, report: dict[str, Any]) -> int:
    connect = report["connect"]
    if connect["failed"] and connect["failed"] >= connect["connections"]:
        print(
            f"trio-broadcast bench: no connection to {report['config']['url']} succeeded: "
            f"{_short(report['errors'])}",
            file=sys.stderr,
        )
        return 3
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        print(format_report(report), flush=True)
    return 0


def _coordinate(
    args: argparse.Namespace, url: str, server_pid: int | None, loadgen: Path | None = None
) -> dict[str, Any]:
    """One run over W workers: Python processes, or with ``loadgen`` (``--driver c``) that
    binary's processes, driven through :class:`.loadgen.LoadgenWorker` the same way."""
    workers = args.workers or _default_workers(args.spawn)
    workers = max(1, min(workers, args.subscribers + args.publishers + args.stalled or 1))
    publishers_per_worker: list[list[int]] = [[] for _ in range(workers)]
    for number in range(args.publishers):
        publishers_per_worker[number % workers].append(number)
    subs = _split(args.subscribers, workers)
    stalled = _split(args.stalled, workers)
    per_publisher_rate = args.rate / args.publishers if args.rate and args.publishers else None
    run_id = secrets.token_hex(3)
    specs = [
        WorkerSpec(
            index=i,
            url=url,
            run_id=run_id,
            subscribers=subs[i],
            publishers=publishers_per_worker[i],
            stalled=stalled[i],
            rate=per_publisher_rate,
            window=args.window,
            size=args.size,
            total_publishers=args.publishers,
            duration=args.duration,
            drain_timeout=args.drain_timeout,
            connect_timeout=args.connect_timeout,
        )
        for i in range(workers)
    ]
    progress = _Progress(quiet=args.quiet, workers=workers)
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue()
    pipes: list[tuple[Any, Any]]
    processes: list[Any]
    if loadgen is not None:
        from .loadgen import LoadgenWorker

        processes = [LoadgenWorker(loadgen, spec, out) for spec in specs]
        pipes = [(process, None) for process in processes]  # it takes the commands itself
    else:
        pipes = [context.Pipe() for _ in specs]
        processes = [
            context.Process(target=_worker_main, args=(spec, child, out), daemon=True)
            for spec, (_, child) in zip(specs, pipes, strict=True)
        ]
    rss_idle = process_rss_bytes(server_pid) if server_pid else None
    for process in processes:
        process.start()
    results: dict[int, WorkerResult] = {}
    try:
        progress.phase("connecting")
        connected = _wait_for(out, "connected", workers, progress, results, timeout=None)
        connect_total = max(float(c.get("wall_s", 0.0)) for c in connected)
        rss_connected = process_rss_bytes(server_pid) if server_pid else None
        status_before = fetch_status(url)
        cpu_before = process_cpu_seconds(server_pid) if server_pid else None
        ticks_before = machine_ticks()
        t0_ns = time.monotonic_ns() + int(START_MARGIN * 1e9)
        _broadcast(pipes, {"cmd": "start", "t0_ns": t0_ns})
        progress.phase("publishing", t0_ns)
        published = _wait_for(out, "published", workers, progress, results, timeout=None)
        last_seqs = [p["last_seq"] for p in published if p["last_seq"] is not None]
        target = max(last_seqs) if last_seqs else None
        # Up to the target, every message of this run must be known to be accepted: stop
        # before the first one a publisher is still waiting to hear about.
        caps = [p["complete_until"] for p in published if p.get("complete_until") is not None]
        if target is not None and caps:
            target = min(target, *caps)
        progress.phase("draining", t0_ns)
        _broadcast(
            pipes, {"cmd": "drain", "target_seq": target, "drain_timeout": args.drain_timeout}
        )
        _wait_for(out, "drained", workers, progress, results, timeout=args.drain_timeout + 60)
        cpu_after = process_cpu_seconds(server_pid) if server_pid else None
        ticks_after = machine_ticks()
        wall_end_ns = time.monotonic_ns()
        status_after = fetch_status(url)
        _wait_for(out, "result", workers, progress, results, timeout=60)
    finally:
        progress.done()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return _aggregate(
        args,
        url=url,
        workers=workers,
        results=list(results.values()),
        t0_ns=t0_ns,
        wall_end_ns=wall_end_ns,
        connect_total=connect_total,
        server_pid=server_pid,
        server_cpu=(cpu_before, cpu_after),
        rss=(rss_idle, rss_connected),
        status=(status_before, status_after),
        machine=_machine_report(ticks_before, ticks_after),
    )


def _broadcast(pipes: list[tuple[Any, Any]], command: dict[str, Any]) -> None:
    for parent, _ in pipes:
        with contextlib.suppress(OSError):  # a worker that already ended
            parent.send(command)


def _wait_for(
    out: Any,
    kind: str,
    workers: int,
    progress: _Progress,
    results: dict[int, WorkerResult],
    timeout: float | None,
) -> list[dict[str, Any]]:
    """Collect one ``kind`` message per worker, printing progress meanwhile. A worker that
    has ended (its result is in) stands in with what it measured, now and in later waits."""
    if kind == "result":
        got: dict[int, Any] = dict(results)
    else:
        got = {index: _stand_in(result) for index, result in results.items()}
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(got) < workers:
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"workers did not report {kind!r} in time")
        try:
            message_kind, index, payload = out.get(timeout=0.25)
        except queue.Empty:
            progress.tick()
            continue
        if message_kind == "progress":
            progress.update(index, payload)
        elif message_kind == "result":
            results[index] = payload
            if kind == "result":
                got[index] = payload
            elif index not in got:  # a worker that ended early (e.g. could not connect)
                got[index] = _stand_in(payload)
        elif message_kind == kind:
            got[index] = payload
        progress.tick()
    return list(got.values())


def _stand_in(result: WorkerResult) -> dict[str, Any]:
    """What an ended worker answers for any message the coordinator waits for."""
    return {"last_seq": result.last_seq, "acked": result.acked}


class _Progress:
    """A progress line on stderr, once a second."""

    def __init__(self, *, quiet: bool, workers: int) -> None:
        self.quiet = quiet
        self.latest: dict[int, dict[str, int]] = {}
        self.name = ""
        self.t0_ns: int | None = None
        self.last_print = 0.0
        self.previous: tuple[float, int, int] | None = None
        self.workers = workers

    def phase(self, name: str, t0_ns: int | None = None) -> None:
        self.name = name
        if t0_ns is not None:
            self.t0_ns = t0_ns

    def update(self, index: int, payload: dict[str, int]) -> None:
        self.latest[index] = payload

    def tick(self) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last_print < PROGRESS_INTERVAL:
            return
        self.last_print = now
        total = Counter[str]()
        for payload in self.latest.values():
            total.update(payload)
        since = ""
        if self.t0_ns is not None:
            since = f" t={max(0.0, (time.monotonic_ns() - self.t0_ns) / 1e9):5.1f}s"
        rates = ""
        if self.previous is not None:
            elapsed = now - self.previous[0]
            acked = (total["acked"] - self.previous[1]) / elapsed
            delivered = (total["delivered"] - self.previous[2]) / elapsed
            rates = f" intake {acked:,.0f}/s deliveries {delivered:,.0f}/s"
        self.previous = (now, total["acked"], total["delivered"])
        print(
            f"bench {self.name}{since}: connected {total['connected']:,} "
            f"sent {total['sent']:,} acked {total['acked']:,} delivered {total['delivered']:,}"
            f"{rates} evicted {total['evicted']} errors {total['errors']}",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        pass


def _ms(value_us: int | None) -> float | None:
    return None if value_us is None else round(value_us / 1000, 3)


def _quantile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _aggregate(
    args: argparse.Namespace,
    *,
    url: str,
    workers: int,
    results: list[WorkerResult],
    t0_ns: int,
    wall_end_ns: int,
    connect_total: float,
    server_pid: int | None,
    server_cpu: tuple[float | None, float | None],
    rss: tuple[int | None, int | None],
    status: tuple[dict[str, Any] | None, dict[str, Any] | None],
    machine: dict[str, Any],
) -> dict[str, Any]:
    latency: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    connect_ms: list[float] = []
    for result in results:
        latency.update(result.latency)
        errors.update(result.errors)
        closes.update({str(code): n for code, n in result.closes.items()})
        connect_ms += result.connect_ms

    def total(name: str) -> int:
        return sum(int(getattr(result, name)) for result in results)

    accepted = total("acked")
    refused = sum(n for kind, n in errors.items() if kind.startswith("refused:"))
    delivered = total("delivered")
    expected = total("expected_messages") * args.subscribers
    last_receive = max((r.last_receive_ns for r in results), default=0)
    delivery_s = max(1e-9, (last_receive - t0_ns) / 1e9) if last_receive else args.duration
    frames = total("frames")
    connections = args.subscribers + args.publishers + args.stalled
    cpu = sum(r.cpu_s for r in results)
    run_s = max(1e-9, (wall_end_ns - t0_ns) / 1e9)
    report: dict[str, Any] = {
        "config": {
            "url": url,
            "subscribers": args.subscribers,
            "publishers": args.publishers,
            "stalled": args.stalled,
            "mode": "max" if args.rate is None else "rate",
            "rate": args.rate,
            "window": args.window if args.rate is None else None,
            "duration_s": args.duration,
            "size": args.size,
            "batch": not args.no_batch,
            "workers": workers,
            "driver": args.driver,
        },
        "connect": {
            "connections": connections,
            "failed": total("connect_failed"),
            "total_s": round(connect_total, 3),
            "per_second": round(connections / connect_total, 1) if connect_total else None,
            "p50_ms": _round(_quantile(connect_ms, 0.5)),
            "p99_ms": _round(_quantile(connect_ms, 0.99)),
            "max_ms": _round(max(connect_ms, default=None)),
        },
        "publish": {
            "offered": round(args.rate * args.duration) if args.rate else None,
            "sent": total("sent"),
            "accepted": accepted,
            "refused": refused,
            "unanswered": total("sent") - accepted - refused,
            "intake_per_s": round(accepted / args.duration, 1),
            "publisher_lag_max_ms": round(max((r.publish_lag_ms for r in results), default=0), 3),
        },
        "delivery": {
            "expected": expected,
            "delivered": delivered,
            "ratio": round(delivered / expected, 6) if expected else None,
            "per_second": round(delivered / delivery_s, 1),
            "elapsed_s": round(delivery_s, 3),
            "frames": frames,
            "messages_per_frame": round(total("events") / frames, 2) if frames else None,
        },
        "latency_ms": {
            "samples": sum(latency.values()),
            "p50": _ms(percentile(latency, 0.50)),
            "p90": _ms(percentile(latency, 0.90)),
            "p99": _ms(percentile(latency, 0.99)),
            "max": _ms(bucket_floor(max(latency)) if latency else None),
        },
        "integrity": {
            "gaps": total("gaps"),
            "missing": total("missing"),
            "duplicates": total("duplicates"),
        },
        "evictions": {
            "subscribers": total("evicted"),
            "stalled_evicted": total("stalled_evicted"),
            "stalled_dropped": total("stalled_dropped"),
            "stalled": args.stalled,
        },
        "errors": dict(errors),
        "unexpected_closes": dict(closes),
        "bench_cpu": {
            "cpu_s": round(cpu, 3),
            "cores": round(cpu / run_s, 3),
            "workers": workers,
        },
        "server": _server_report(server_pid, server_cpu, rss, status, connections, run_s),
        "machine": machine,
    }
    return report


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _server_report(
    pid: int | None,
    cpu: tuple[float | None, float | None],
    rss: tuple[int | None, int | None],
    status: tuple[dict[str, Any] | None, dict[str, Any] | None],
    connections: int,
    run_s: float,
) -> dict[str, Any] | None:
    report: dict[str, Any] = {"pid": pid}
    before, after = cpu
    if before is not None and after is not None:
        report["cpu_s"] = round(after - before, 3)
        report["cores"] = round((after - before) / run_s, 3)
    idle, connected = rss
    if idle is not None and connected is not None:
        report["rss_before_connect_bytes"] = idle
        report["rss_connected_bytes"] = connected
        report["bytes_per_connection"] = round((connected - idle) / max(1, connections))
    first, last = status
    if first is not None and last is not None:
        delta = {
            key: last[key] - first[key]
            for key in ("messages_in", "deliveries", "frames_out", "messages_out")
            if isinstance(first.get(key), int) and isinstance(last.get(key), int)
        }
        if delta.get("frames_out"):
            delta["messages_per_frame"] = round(delta["messages_out"] / delta["frames_out"], 2)
        report["status_delta"] = delta
        report["evictions"] = last.get("evictions")
    return report if len(report) > 1 else None


def format_report(report: dict[str, Any]) -> str:
    """The results as a readable table."""
    c = report["config"]
    rate = f"max (window {c['window']})" if c["mode"] == "max" else f"{c['rate']:g} msg/s"
    lines = [
        f"trio-broadcast bench: {c['subscribers']} subscribers, {c['publishers']} publishers, "
        f"{c['stalled']} stalled; rate {rate}; {c['duration_s']:g} s; {c['size']} chars; "
        f"batch {'on' if c['batch'] else 'off'}; {c['workers']} workers ({c['driver']} driver)",
        "",
    ]

    def row(name: str, value: Any, note: str = "") -> None:
        shown = "-" if value is None else (f"{value:,}" if isinstance(value, int) else str(value))
        if isinstance(value, float):
            shown = f"{value:,.3f}".rstrip("0").rstrip(".")
        lines.append(f"  {name:<28} {shown:>16}  {note}".rstrip())

    d, p, lat = report["delivery"], report["publish"], report["latency_ms"]
    row("deliveries/s", d["per_second"], f"over {d['elapsed_s']} s")
    ratio = None if d["ratio"] is None else f"{d['ratio']:.4f}"
    row("delivered / expected", ratio, f"{d['delivered']:,} of {d['expected']:,}")
    row("intake (accepted msg/s)", p["intake_per_s"], f"{p['accepted']:,} accepted")
    if p["unanswered"]:
        row("unanswered publishes", p["unanswered"], "no ack within --drain-timeout")
    if p["offered"] is not None:
        row("offered messages", p["offered"], f"{p['sent']:,} sent")
    row("messages per frame", d["messages_per_frame"], f"{d['frames']:,} frames")
    row("latency p50 (ms)", lat["p50"])
    row("latency p90 (ms)", lat["p90"])
    row("latency p99 (ms)", lat["p99"])
    row("latency max (ms)", lat["max"], f"{lat['samples']:,} samples")
    i = report["integrity"]
    row("gaps / missing", f"{i['gaps']} / {i['missing']}")
    row("duplicates", i["duplicates"])
    e = report["evictions"]
    row("evicted subscribers", e["subscribers"])
    row("stalled evicted", f"{e['stalled_evicted']} / {e['stalled']}")
    row("errors", sum(report["errors"].values()), _short(report["errors"]))
    row("unexpected closes", sum(report["unexpected_closes"].values()))
    k = report["connect"]
    row("connect total (s)", k["total_s"], f"{k['connections']:,} connections")
    row("connects per second", k["per_second"])
    row("connect p50 / p99 (ms)", f"{k['p50_ms']} / {k['p99_ms']}")
    b = report["bench_cpu"]
    row("bench CPU (cores)", b["cores"], f"{b['cpu_s']} s over {b['workers']} workers")
    server = report.get("server")
    if server:
        if "cores" in server:
            row("server CPU (cores)", server["cores"], f"{server['cpu_s']} s")
        if "bytes_per_connection" in server:
            row("server memory/connection", server["bytes_per_connection"], "bytes (RSS delta)")
        delta = server.get("status_delta") or {}
        if "messages_per_frame" in delta:
            row("server messages per frame", delta["messages_per_frame"])
    machine = report.get("machine") or {}
    if "busy_pct" in machine:
        row("machine busy %", machine["busy_pct"], f"{machine['cpus']} CPUs")
        row("machine steal %", machine["steal_pct"], "CPU taken by the hypervisor")
    return "\n".join(lines)


def _short(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) if counts else ""
