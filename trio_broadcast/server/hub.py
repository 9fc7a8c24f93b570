"""The fan-out core: subscribers, their outboxes, the broadcaster task, the slow-consumer
policy. Knows nothing of Quart or sockets.

The path of one message (the rest of it is in :mod:`.connection`): a connection's reader calls
:meth:`Hub.submit`, which puts it in the bounded intake (publishers get back-pressure). The
broadcaster task (:meth:`Hub.serve`) wakes, takes everything waiting, gives each message the next
``seq``, encodes it **once** (JSON, and the WebSocket frame around it) and keeps it in the history.
All of them travel as one :class:`~.outbox.Bundle`, and one **pass** over the subscribers hands it
to each: no ``await`` and no per-subscriber encoding in the pass.

What the pass does for a subscriber depends on its state, and its state says who writes to its
socket (h11 keeps its states the same way, as a table)::

    state   who writes its frames          what the pass does      it moves on when
    ------  -----------------------------  ----------------------  ---------------------------
    QUEUED  its connection's writer task,  puts the bundle in its  the writer has written all
            everything waiting in one      outbox; over the        and the socket takes direct
            write                          limits: slow consumer   writes: -> DIRECT
                                           (4008)
    DIRECT  the broadcaster, in its pass   writes the bundle's     the socket takes less than
            (and the reader, for an error  bytes now: one          all: -> QUEUED
            reply)                         write(2)
    CLOSED  nobody                         nothing                 never

A subscriber starts QUEUED (its writer sends the welcome and any replay first). The outbox holds
only what the socket could not take; a client that keeps up is written by the pass itself, and
no task wakes for it.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

import attrs
import structlog
import trio

from ..errors import (
    BackplaneUnavailableError,
    CloseCode,
    CloseConnection,
    ErrorCode,
    SlowConsumerError,
)
from ..ratelimit import RateLimiter
from ..wire.frames import PING_FRAME
from ..wire.protocol import (
    Outgoing,
    Publish,
    Recovery,
    encode_ack,
    encode_error,
    encode_message,
    encode_welcome,
    format_timestamp,
)
from .backplane import AppendRequest, Backoff, Backplane, Record
from .config import Settings
from .history import History
from .outbox import FLUSH, Bundle, Outbox

log = structlog.get_logger("trio_broadcast.server.hub")

INTAKE_SIZE = 1024  # published messages waiting for the broadcaster before readers block
MAX_RESTARTS = 5  # broadcaster crashes tolerated within RESTART_WINDOW before the hub fails
RESTART_WINDOW = 60.0  # seconds
PASS_LOAD_FACTOR = 0.25  # after a long pass, the broadcaster pauses a quarter as long as it took
LONG_PASS = 0.001  # seconds of CPU: a pass shorter than this is followed by no such pause
BACKPLANE_STARTUP_TIMEOUT = 30.0  # seconds start-up waits for the backplane before failing
REPORT_INTERVAL = 2.0  # seconds between two reports of this node's connection count
REPORT_TTL = 3 * REPORT_INTERVAL  # seconds a node's count lasts unless reported again


class State(enum.Enum):
    """Who writes a subscriber's frames (see the table in the module docstring)."""

    QUEUED = "queued"  # its connection's writer, from the outbox
    DIRECT = "direct"  # the broadcaster's pass, straight to the socket
    CLOSED = "closed"  # nobody: it left, or is being closed


class DirectWriter(Protocol):
    """Writes whole frames, as bytes, to one client's socket without waiting."""

    def write_nowait(self, data: bytes) -> int:
        """Write what the socket takes now; never blocks.

        Returns -1 when nothing was written (use the connection's writer), else the number of
        bytes written; when that is short of ``len(data)``, the rest waits in the writer and
        goes out before anything else (the connection's writer flushes it).
        """


LatencyObserver = Callable[[float, int], None]  # (seconds, how many deliveries took that long)


@attrs.define(eq=False)
class Subscriber:
    """One connected client as the hub sees it."""

    client_id: str  # random, sent in the welcome frame and as ``sender``
    batch: bool  # the client opted in to batched frames
    outbox: Outbox  # what its writer is to send; the hub puts, the connection takes
    limiter: RateLimiter  # publish rate limit of this client
    writer: DirectWriter | None = None  # None: the connection's writer sends everything
    state: State = State.QUEUED
    closing: CloseConnection | None = None  # set once: why the connection must close


@attrs.frozen
class Subscription:
    """What :meth:`Hub.subscribe` hands a new connection."""

    subscriber: Subscriber
    welcome: str  # the encoded welcome frame
    replay: list[Outgoing]  # missed broadcasts to send before anything from the outbox
    recovery: Recovery | None  # the ``recovered`` frame, when the client asked to resume


class BackplaneState(enum.Enum):
    """Whether the backplane (``redis_url``) answers; ``NONE`` without one."""

    NONE = "none"  # no backplane: one process, in memory
    CONNECTING = "connecting"  # starting up
    UP = "up"  # the reader's last call and every append since succeeded
    DOWN = "down"  # unreachable: publishes are refused with backplane_unavailable


Sequenced = tuple[Subscriber | None, Outgoing, Outgoing | None]  # author (if here), entry, ack


@attrs.frozen
class HubStatistics:
    """A snapshot of the hub's counters (see :meth:`Hub.statistics`)."""

    epoch: str
    seq: int
    connections: int
    connections_total: int
    open_sessions: int
    messages_in: int
    deliveries: int
    frames_out: int
    messages_out: int
    evictions: dict[str, int]
    errors: dict[str, int]
    outbox_depth_total: int
    outbox_depth_max: int
    history_length: int
    intake_depth: int
    restarts: int
    failed: bool
    backplane: str  # BackplaneState's value
    cluster_connections: int | None  # every node's, with a backplane (None: unknown or none)


class Hub:
    """Subscribers and the broadcaster. Create one per app; run :meth:`serve` in a nursery."""

    def __init__(
        self, settings: Settings, *, server_name: str, backplane: Backplane | None = None
    ) -> None:
        self.settings = settings
        self.server_name = server_name  # sent in welcome frames
        self.epoch = secrets.token_hex(4)  # names this history; new on every start
        self.seq = 0  # the newest broadcast's sequence number
        self.closing = False  # shutting down: no new subscribers
        self.open_sessions = 0  # connections whose task is still running, closing ones included
        self.failed: BaseException | None = None  # set when the broadcaster gave up
        self.failed_event = trio.Event()  # set together with ``failed``
        self.observe_latency: LatencyObserver | None = None  # fed for every delivery written
        self._subscribers: dict[str, Subscriber] = {}
        self._history = History(settings.history_size, settings.history_ttl)
        self._intake_send, self._intake_receive = trio.open_memory_channel[
            tuple[Subscriber, Publish]
        ](INTAKE_SIZE)
        self._clients_changed = trio.Event()  # set and replaced when a client comes or goes
        self._restarts: collections.deque[float] = collections.deque()
        self._counters = collections.Counter[str]()
        self._frames_out = 0  # plain attributes: bumped on every write
        self._messages_out = 0
        self._evictions = collections.Counter[str]()
        self._errors = collections.Counter[str]()
        # With a backplane (see backplane.py): the log sequences, the reader fans out.
        self._backplane = backplane
        self.backplane_state = (
            BackplaneState.NONE if backplane is None else BackplaneState.CONNECTING
        )
        self.node_id = secrets.token_hex(4)  # names this process in the log's entries
        self._log_epoch: str | None = None  # the epoch of the log read, once read
        self._last_id = "0-0"  # the newest log entry read
        self._next_key = 0  # numbers this node's publishes, to match them when they come back
        self._pending: dict[int, tuple[Subscriber, str | None]] = {}  # key -> author, its id
        self.cluster_connections: int | None = None  # every node's, once known (backplane only)

    # -- connections ---------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        *,
        batch: bool = False,
        since: int | None = None,
        epoch: str | None = None,
        last: int | None = None,
        writer: DirectWriter | None = None,
    ) -> Subscription:
        """Register a new client, atomically with its resume snapshot.

        ``since`` + ``epoch`` resume after a broadcast (on an epoch mismatch, the newest ``last``
        of this epoch's history, or all of it, is replayed); ``last`` alone asks for the newest
        ``last`` broadcasts. Either way a ``recovered`` frame follows the replay. ``writer``
        lets the broadcaster write to the client directly once its writer hands it over.

        Not a checkpoint: nothing can be broadcast between taking the snapshot and registering.

        Raises:
            CloseConnection: 1001 while shutting down, 1011 when the hub has failed,
                1013 at ``max_connections``.
        """
        if self.closing:
            raise CloseConnection("server shutting down", CloseCode.GOING_AWAY)
        if self.failed is not None:
            raise CloseConnection("server unavailable", CloseCode.INTERNAL_ERROR)
        limit = self.settings.max_connections
        if limit is not None and len(self._subscribers) >= limit:
            self._evictions["connection_limit"] += 1
            raise CloseConnection("server at its connection limit", CloseCode.TRY_AGAIN_LATER)
        client_id = secrets.token_hex(6)
        while client_id in self._subscribers:  # pragma: no cover - 48 random bits
            client_id = secrets.token_hex(6)
        subscriber = Subscriber(
            client_id=client_id,
            batch=batch,
            outbox=Outbox(self.settings.outbox_messages, self.settings.outbox_bytes),
            limiter=RateLimiter(
                self.settings.publish_rate,
                self.settings.publish_burst,
                self.settings.rate_limit_strikes,
            ),
            writer=writer,
        )
        replay: list[Outgoing] = []
        recovery = None
        if since is not None:
            replay, recovery = self._history.recover(
                since, epoch == self.epoch, self.seq, trio.current_time(), last
            )
        elif last is not None:
            replay, recovery = self._history.latest(last, self.seq, trio.current_time())
        self._subscribers[client_id] = subscriber
        self._notify_clients_changed()
        self._counters["connections_total"] += 1
        welcome = encode_welcome(
            client_id=client_id,
            seq=self.seq,
            epoch=self.epoch,
            connections=len(self._subscribers),
            server=self.server_name,
            batch=batch,
            limits=self.settings.limits(),
            cluster_connections=self.cluster_connections,
        )
        return Subscription(subscriber, welcome, replay, recovery)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber (idempotent, never blocks). Its outbox is closed."""
        if self._subscribers.get(subscriber.client_id) is subscriber:
            del self._subscribers[subscriber.client_id]
            self._notify_clients_changed()
        subscriber.state = State.CLOSED
        subscriber.outbox.close()

    def _notify_clients_changed(self) -> None:
        self._clients_changed.set()
        self._clients_changed = trio.Event()

    def session_opened(self) -> None:
        self.open_sessions += 1
        self._notify_clients_changed()

    def session_closed(self) -> None:
        self.open_sessions -= 1
        self._notify_clients_changed()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever a client comes or goes (or the
        backplane's state changes).

        Always a checkpoint.
        """
        await trio.lowlevel.checkpoint()
        while not predicate():
            await self._clients_changed.wait()

    def disconnect(self, subscriber: Subscriber, reason: CloseConnection) -> None:
        """Drop a subscriber and tell its connection to close with ``reason.close_code``."""
        if subscriber.closing is None:
            subscriber.closing = reason
        self.unsubscribe(subscriber)

    def close_all(self) -> None:
        """Shutdown: refuse new subscribers and ask every connection to close with 1001."""
        self.closing = True
        for subscriber in list(self._subscribers.values()):
            self.disconnect(
                subscriber, CloseConnection("server shutting down", CloseCode.GOING_AWAY)
            )
        self._intake_send.close()

    def reply(self, subscriber: Subscriber, frame: str) -> None:
        """Queue a frame for one subscriber only (an error); never blocks.

        Its writer sends it, after everything broadcast before it.
        """
        if subscriber.state is State.CLOSED:
            return
        handed = self._hand(subscriber, Bundle((Outgoing.of(frame, trio.current_time()),)))
        if handed > 0:
            self.count_written(handed, 1)
        elif handed < 0:
            self._evict_slow(subscriber)

    def writer_idle(self, subscriber: Subscriber) -> None:
        """Called by a connection's writer when it has written everything it took: with its
        outbox empty, a subscriber that can be written directly is from now on (DIRECT)."""
        if (
            subscriber.state is State.QUEUED
            and subscriber.writer is not None
            and subscriber.outbox.empty
        ):
            subscriber.state = State.DIRECT

    def count_error(self, code: str) -> None:
        self._errors[code] += 1

    def count_written(self, frames: int, messages: int) -> None:
        """Called by writers after each write; feeds messages out / frames out."""
        self._frames_out += frames
        self._messages_out += messages

    def count_eviction(self, reason: str) -> None:
        self._evictions[reason] += 1

    # -- publishing ----------------------------------------------------------------------

    async def submit(self, subscriber: Subscriber, publish: Publish) -> None:
        """Hand a message to the broadcaster; blocks only while the intake is full.

        Not a checkpoint when there is room: a publisher's reader then takes its next frame in
        the same scheduling round instead of yielding once more per message. Cancel-safe: a
        cancelled submit was not accepted.

        Raises:
            trio.ClosedResourceError: the hub is shutting down.
        """
        try:
            self._intake_send.send_nowait((subscriber, publish))
        except trio.WouldBlock:
            await self._intake_send.send((subscriber, publish))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the broadcaster until the intake closes (shutdown) or the task is cancelled.

        A crash is logged and the loop restarted; more than ``MAX_RESTARTS`` crashes within
        ``RESTART_WINDOW`` seconds fail the hub: every connection is closed with 1011, ``/health``
        reports it, and the error is raised.

        With a backplane, the broadcaster is the appender and the reader (see
        :meth:`_run_backplane`), inside the backplane's connections; call
        :meth:`wait_for_backplane` first (``serve()`` does), or this waits for it too.
        """
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            if self.settings.ping_interval is not None:
                nursery.start_soon(self._ping_loop, self.settings.ping_interval)
            try:
                if self._backplane is None:
                    await self._supervise(self._broadcast_loop, task_status)
                else:
                    backplane = self._backplane
                    async with backplane.open():
                        await self._start_backplane(backplane)
                        await self._supervise(partial(self._run_backplane, backplane), task_status)
            except Exception as error:  # noqa: BLE001 - re-raised below, outside the nursery
                failure = error
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _supervise(
        self, loop: Callable[[], Awaitable[None]], task_status: trio.TaskStatus[None]
    ) -> None:
        """Report started, then run ``loop`` until it returns, restarting it after a crash."""
        task_status.started()
        while True:
            try:
                await loop()
            except Exception as error:
                now = trio.current_time()
                self._restarts.append(now)
                while self._restarts and self._restarts[0] < now - RESTART_WINDOW:
                    self._restarts.popleft()
                if len(self._restarts) <= MAX_RESTARTS:
                    log.exception("broadcaster_crashed", restart=len(self._restarts))
                    continue
                log.critical("broadcaster_failed", restarts=len(self._restarts), exc_info=True)
                self._fail(error)
                raise
            return

    async def _ping_loop(self, interval: float) -> None:
        """Ping every client written directly, one pass per ``interval`` seconds: their pongs keep
        the connection's idle timeout from running out. (A client whose connection cannot be
        written directly is pinged by Hypercorn; a QUEUED one's socket is busy with data.)"""
        while True:
            await trio.sleep(interval)
            for subscriber in self._subscribers.values():
                if subscriber.state is State.DIRECT:
                    self._write_direct(subscriber, PING_FRAME)

    def _fail(self, error: BaseException) -> None:
        self.failed = error
        for subscriber in list(self._subscribers.values()):
            self.disconnect(
                subscriber, CloseConnection("server unavailable", CloseCode.INTERNAL_ERROR)
            )
        self.failed_event.set()

    def _gather(self, first: tuple[Subscriber, Publish]) -> list[tuple[Subscriber, Publish]]:
        """``first`` and whatever else the intake holds now, up to about a quarter of an
        outbox's limits (message text counted for bytes). Never blocks."""
        accepted = [first]
        chars = len(first[1].message)
        max_events = max(1, self.settings.outbox_messages // 4)
        max_chars = self.settings.outbox_bytes // 4
        while len(accepted) < max_events and chars < max_chars:
            try:
                accepted.append(self._intake_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            chars += len(accepted[-1][1].message)
        return accepted

    async def _broadcast_loop(self) -> None:
        """Broadcast what the intake holds, a bundle per wakeup.

        A bundle takes everything queued, up to about a quarter of an outbox's limits (message
        text counted for bytes): a burst larger than an outbox then goes out in several bundles
        with a scheduling round between them, in which writers drain their outboxes, instead of
        overflowing every outbox at once. After each pass the broadcaster pauses for
        ``write_delay``, or after a pass longer than ``LONG_PASS``, a quarter as long as the pass
        took (CPU time) if that is longer: under load, messages gather during the pause and the
        next bundle carries more of them, so each write to a socket carries more frames instead
        of the writing taking over the CPU.
        """
        write_delay = self.settings.write_delay
        async for first in self._intake_receive:
            accepted = self._gather(first)
            started = time.thread_time()  # CPU time: a pass the OS preempted is not "long"
            self._broadcast(accepted)
            busy = time.thread_time() - started
            pause = max(write_delay, PASS_LOAD_FACTOR * busy if busy > LONG_PASS else 0.0)
            if pause > 0:
                await trio.sleep(pause)

    def _broadcast(self, accepted: list[tuple[Subscriber, Publish]]) -> None:
        """Sequence and encode messages accepted together, keep them, and fan them out."""
        timestamp = format_timestamp(time.time())
        now = trio.current_time()
        sequenced: list[Sequenced] = []  # author, message, its ack
        for sender, publish in accepted:
            seq = self.seq + len(sequenced) + 1
            try:
                entry = Outgoing.of(
                    encode_message(seq, publish.message, timestamp, sender.client_id), now, seq
                )
            except UnicodeEncodeError:  # lone surrogates; Publish.from_text refuses them
                log.exception("unencodable_broadcast_dropped", client_id=sender.client_id)
                continue
            ack = Outgoing.of(encode_ack(seq, timestamp, publish.id), now, seq)
            sequenced.append((sender, entry, ack))
        if not sequenced:
            return
        self.seq += len(sequenced)
        for _, entry, _ in sequenced:
            self._history.append(entry)
        self._counters["messages_in"] += len(sequenced)
        self._fan_out(Bundle([entry for _, entry, _ in sequenced]), sequenced)

    def _fan_out(self, bundle: Bundle, sequenced: Sequence[Sequenced]) -> None:
        """One pass: hand ``bundle`` to every subscriber but its authors, who get their acks in
        place of their own messages. Never blocks, never awaits."""
        authors = {author for author, _, _ in sequenced if author is not None}
        count = len(bundle.entries)
        direct = frames = queued = 0
        slow: list[Subscriber] = []
        for subscriber in self._subscribers.values():  # the hot loop
            if subscriber in authors:
                continue
            handed = self._hand(subscriber, bundle)
            if handed > 0:
                direct += 1
                frames += handed
            elif handed == 0:
                queued += 1
            else:
                slow.append(subscriber)
        for subscriber in slow:
            self._evict_slow(subscriber)
        delivered = (direct + queued) * count
        for author in authors:  # its acks in place of its own messages, among the others'
            if author.state is State.CLOSED:  # it left meanwhile
                continue
            own = Bundle(
                [
                    ack if who is author and ack is not None else entry
                    for who, entry, ack in sequenced
                ]
            )
            handed = self._hand(author, own)
            if handed < 0:
                self._evict_slow(author)
                continue
            if handed > 0:
                direct += 1
                frames += handed
            delivered += sum(who is not author for who, _, _ in sequenced)
        self._counters["deliveries"] += delivered
        self._frames_out += frames
        self._messages_out += direct * count
        if self.observe_latency is not None and direct:
            self.observe_latency(trio.current_time() - bundle.entries[0].created, direct)

    def _hand(self, subscriber: Subscriber, bundle: Bundle) -> int:
        """Give a subscriber that has not left a bundle: written now when it is DIRECT and its
        socket takes it, else put in its outbox (it is QUEUED from then on).

        Returns the frames written now (> 0), 0 when queued, or -1 when the outbox has no room:
        a slow consumer, for the caller to evict. Never blocks.
        """
        if subscriber.state is State.DIRECT and self._write_direct(
            subscriber, bundle.wire(subscriber.batch)
        ):
            return 1 if subscriber.batch else len(bundle.entries)
        subscriber.state = State.QUEUED
        return 0 if subscriber.outbox.put_nowait(bundle) else -1

    def _write_direct(self, subscriber: Subscriber, data: bytes) -> bool:
        """Write ``data`` to a DIRECT subscriber's socket now. True when the socket took it;
        if it took only part, the rest waits in the writer and the subscriber is QUEUED, with
        its connection woken to finish it. False when it took nothing (full, or failed): the
        subscriber is QUEUED, and ``data`` is the caller's to queue or drop."""
        assert subscriber.writer is not None  # DIRECT only with a writer
        written = subscriber.writer.write_nowait(data)
        if written == len(data):
            return True
        subscriber.state = State.QUEUED
        if written < 0:
            return False
        subscriber.outbox.put_nowait(FLUSH)
        return True

    def _evict_slow(self, subscriber: Subscriber) -> None:
        self._evictions["slow_consumer"] += 1
        log.warning(
            "evicted",
            client_id=subscriber.client_id,
            reason="slow_consumer",
            queued=subscriber.outbox.events,
            queued_bytes=subscriber.outbox.bytes,
        )
        self.disconnect(subscriber, SlowConsumerError("slow consumer: outbox overflowed"))

    # -- with a backplane ----------------------------------------------------------------

    async def wait_for_backplane(self) -> None:
        """Before serving: wait until the backplane answers (if there is one), and learn its
        epoch and history. ``serve()`` calls it before it listens. A checkpoint.

        Raises:
            BackplaneUnavailableError: no answer within ``BACKPLANE_STARTUP_TIMEOUT`` seconds.
        """
        if self._backplane is not None:
            async with self._backplane.open():
                await self._start_backplane(self._backplane)

    async def _start_backplane(self, backplane: Backplane) -> None:
        """Learn the log's epoch and fill the history from it, retrying with backoff for up to
        ``BACKPLANE_STARTUP_TIMEOUT`` seconds.

        Raises:
            BackplaneUnavailableError: the backplane did not answer in that time.
        """
        backoff = Backoff()
        last = "no answer"
        with trio.move_on_after(BACKPLANE_STARTUP_TIMEOUT):
            while True:
                try:
                    await self._sync(backplane)
                except BackplaneUnavailableError as error:
                    log.warning("backplane_unavailable", error=str(error), during="start-up")
                    last = str(error)
                    await trio.sleep(backoff.next())
                    continue
                self._set_backplane_state(BackplaneState.UP)
                return
        raise BackplaneUnavailableError(
            f"no Redis backplane within {BACKPLANE_STARTUP_TIMEOUT:g} s ({last})"
        )

    async def _sync(self, backplane: Backplane) -> None:
        """After (re)connecting: if the log's epoch is not ours, Redis lost the log. Then every
        client is closed with 1012 (to resume, and learn of the loss from the new epoch), and the
        history is filled afresh from the log's newest entries."""
        epoch = await backplane.ensure_epoch(secrets.token_hex(4))
        if epoch == self._log_epoch:
            return
        newest = await backplane.newest(self.settings.history_size)
        if self._log_epoch is not None:  # we had read another epoch's log: it is gone
            log.warning("backplane_epoch_changed", old=self.epoch, new=epoch)
            for subscriber in list(self._subscribers.values()):
                self.disconnect(
                    subscriber,
                    CloseConnection("history lost; resume", CloseCode.SERVICE_RESTART),
                )
            self._pending.clear()
        self.epoch = self._log_epoch = epoch
        self._history = History(self.settings.history_size, self.settings.history_ttl)
        now, unix_now = trio.current_time(), time.time()
        for record in newest[-self.settings.history_size :] if self.settings.history_size else []:
            entry = self._encode(record, now - record.age(unix_now))
            self._history.append(entry)
        self.seq = newest[-1].seq if newest else 0
        self._last_id = newest[-1].entry_id if newest else "0-0"

    async def _run_backplane(self, backplane: Backplane) -> None:
        """The appender (here), the reader and the reporter (tasks) until the intake closes
        (shutdown)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_loop, backplane)
            nursery.start_soon(self._report_loop, backplane)
            await self._append_loop(backplane)
            nursery.cancel_scope.cancel()

    async def _append_loop(self, backplane: Backplane) -> None:
        """Append what the intake holds to the log, a batch (one script call) per wakeup.

        Batches are gathered as :meth:`_broadcast_loop` gathers bundles; what comes in while one
        is on its way makes the next. A batch that cannot reach the log is refused: each author
        whose publish is still waiting for its entry gets a ``backplane_unavailable`` error.
        """
        async for first in self._intake_receive:
            accepted = self._gather(first)
            requests = []
            for sender, publish in accepted:
                self._next_key += 1
                self._pending[self._next_key] = (sender, publish.id)
                requests.append(AppendRequest(self._next_key, sender.client_id, publish.message))
            timestamp = format_timestamp(time.time())
            try:
                await backplane.append(secrets.token_hex(4), self.node_id, timestamp, requests)
            except BackplaneUnavailableError as error:
                self._backplane_down(error, "append")
                for request in requests:
                    # Gone already if the reader delivered it: Redis ran the script, the reply
                    # was lost. Then the author had its ack, and gets no error.
                    waiting = self._pending.pop(request.key, None)
                    if waiting is not None:
                        self._refuse_unavailable(*waiting)

    async def _report_loop(self, backplane: Backplane) -> None:
        """Every ``REPORT_INTERVAL`` seconds: report this node's connections, learn the
        cluster's (every node's whose report is younger than ``REPORT_TTL``), and trim the log
        by age."""
        while True:
            # On an error, the reader notices and reports it; the last count stands meanwhile.
            with contextlib.suppress(BackplaneUnavailableError):
                total = await backplane.report(self.node_id, len(self._subscribers), REPORT_TTL)
                if total != self.cluster_connections:
                    self.cluster_connections = total
                    self._notify_clients_changed()  # wakes wait_until
                await backplane.trim()
            await trio.sleep(REPORT_INTERVAL)

    def _refuse_unavailable(self, author: Subscriber, id_: str | None) -> None:
        self._errors[ErrorCode.BACKPLANE_UNAVAILABLE] += 1
        self.reply(
            author,
            encode_error(
                ErrorCode.BACKPLANE_UNAVAILABLE,
                "the backplane is unreachable; the message was not confirmed",
                id_,
            ),
        )

    def _backplane_down(self, error: BackplaneUnavailableError, during: str) -> None:
        if self.backplane_state is not BackplaneState.DOWN:
            log.warning("backplane_unavailable", error=str(error), during=during)
            self._set_backplane_state(BackplaneState.DOWN)

    def _set_backplane_state(self, state: BackplaneState) -> None:
        self.backplane_state = state
        self._notify_clients_changed()  # wakes wait_until

    async def _read_loop(self, backplane: Backplane) -> None:
        """Read the log from the last entry read and fan each batch out; after an error, try
        again with backoff (first checking that the log is still the one we read)."""
        count = max(1, self.settings.outbox_messages // 4)
        write_delay = self.settings.write_delay
        backoff = Backoff()
        synced = True
        while True:
            try:
                if not synced:
                    await self._sync(backplane)
                    synced = True
                records = await backplane.read(self._last_id, count)
            except BackplaneUnavailableError as error:
                self._backplane_down(error, "read")
                synced = False
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            if self.backplane_state is not BackplaneState.UP:
                log.info("backplane_available")
                self._set_backplane_state(BackplaneState.UP)
            if not records:
                continue
            started = time.thread_time()
            self._deliver(records)
            busy = time.thread_time() - started
            pause = max(write_delay, PASS_LOAD_FACTOR * busy if busy > LONG_PASS else 0.0)
            if pause > 0:
                await trio.sleep(pause)

    def _encode(self, record: Record, created: float) -> Outgoing:
        return Outgoing.of(
            encode_message(record.seq, record.message, record.timestamp, record.sender),
            created,
            record.seq,
        )

    def _deliver(self, records: Sequence[Record]) -> None:
        """Keep and fan out entries read from the log; a local author gets its ack in place of
        its own message. Never blocks, never awaits."""
        now = trio.current_time()
        sequenced: list[Sequenced] = []
        for record in records:
            self._last_id = record.entry_id
            if record.seq <= self.seq:  # read already (the history was filled past it)
                continue
            if record.seq != self.seq + 1:
                log.warning("backplane_gap", after=self.seq, next=record.seq)
            self.seq = record.seq
            entry = self._encode(record, now)
            author = ack = None
            if record.node == self.node_id:
                waiting = self._pending.pop(record.key, None)
                if waiting is not None:
                    author = waiting[0]
                    ack = Outgoing.of(
                        encode_ack(record.seq, record.timestamp, waiting[1]), now, record.seq
                    )
            sequenced.append((author, entry, ack))
        if not sequenced:
            return
        for _, entry, _ in sequenced:
            self._history.append(entry)
        self._counters["messages_in"] += len(sequenced)
        self._fan_out(Bundle([entry for _, entry, _ in sequenced]), sequenced)

    # -- introspection -------------------------------------------------------------------

    def statistics(self) -> HubStatistics:
        depths = [subscriber.outbox.events for subscriber in self._subscribers.values()]
        return HubStatistics(
            epoch=self.epoch,
            seq=self.seq,
            connections=len(self._subscribers),
            connections_total=self._counters["connections_total"],
            open_sessions=self.open_sessions,
            messages_in=self._counters["messages_in"],
            deliveries=self._counters["deliveries"],
            frames_out=self._frames_out,
            messages_out=self._messages_out,
            evictions=dict(self._evictions),
            errors=dict(self._errors),
            outbox_depth_total=sum(depths),
            outbox_depth_max=max(depths, default=0),
            history_length=len(self._history),
            intake_depth=self._intake_receive.statistics().current_buffer_used,
            restarts=len(self._restarts),
            failed=self.failed is not None,
            backplane=self.backplane_state.value,
            cluster_connections=self.cluster_connections,
        )
