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
    QUEUED  a writer task of its           puts the bundle in its  the writer has written all
            connection (started by the     outbox; over the        and the socket takes direct
            put), everything waiting in    limits: slow consumer   writes: -> DIRECT (the
            one write                      (4008)                  writer task ends)
    DIRECT  the broadcaster, in its pass   writes the bundle's     the socket takes less than
            (and the reader, for an error  bytes now: one          all: -> QUEUED
            reply)                         write(2)
    CLOSED  nobody                         nothing                 never

A subscriber starts QUEUED (its writer sends the welcome and any replay first). The outbox holds
only what the socket could not take; a client that keeps up is written by the pass itself, and
has no writer task at all.
"""

from __future__ import annotations

import collections
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs
import structlog
import trio

from ..errors import CloseCode, CloseConnection, SlowConsumerError
from ..ratelimit import RateLimiter
from ..wire.frames import PING_FRAME
from ..wire.protocol import (
    Outgoing,
    Publish,
    Recovery,
    encode_ack,
    encode_message,
    encode_welcome,
    format_timestamp,
)
from .backplane import Backplane
from .config import Settings
from .history import History
from .outbox import FLUSH, Bundle, Outbox
from .replica import BackplaneState, Replica

log = structlog.get_logger("trio_broadcast.server.hub")

INTAKE_SIZE = 1024  # published messages waiting for the broadcaster before readers block
MAX_RESTARTS = 5  # broadcaster crashes tolerated within RESTART_WINDOW before the hub fails
RESTART_WINDOW = 60.0  # seconds
PASS_LOAD_FACTOR = 0.25  # after a long pass, the broadcaster pauses a quarter as long as it took
LONG_PASS = 0.001  # seconds of CPU: a pass shorter than this is followed by no such pause
LOADED_PASS = 4  # messages in a pass that show load: the pause follows without asking


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
        # With a backplane: the shared log sequences, and the replica fans out what it reads.
        self.replica = Replica(self, backplane) if backplane is not None else None

    @property
    def backplane_state(self) -> BackplaneState:
        return BackplaneState.NONE if self.replica is None else self.replica.state

    @property
    def cluster_connections(self) -> int | None:
        """Every node's connections, with a backplane, once known (else None)."""
        return None if self.replica is None else self.replica.cluster_connections

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
        self.notify_changed()
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
            self.notify_changed()
        subscriber.state = State.CLOSED
        subscriber.outbox.close()

    def notify_changed(self) -> None:
        """Wake :meth:`wait_until`: a client came or went, or the backplane's state changed."""
        self._clients_changed.set()
        self._clients_changed = trio.Event()

    def session_opened(self) -> None:
        self.open_sessions += 1
        self.notify_changed()

    def session_closed(self) -> None:
        self.open_sessions -= 1
        self.notify_changed()

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

    def writer_idle(self, subscriber: Subscriber) -> bool:
        """Called by a connection's writer when it has written everything it took: with its
        outbox empty, a subscriber that can be written directly is from now on (DIRECT).
        Returns whether it is DIRECT: the writer is not needed until something is queued."""
        if (
            subscriber.state is State.QUEUED
            and subscriber.writer is not None
            and subscriber.outbox.empty
        ):
            subscriber.state = State.DIRECT
        return subscriber.state is State.DIRECT

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

        With a backplane, the broadcaster is the replica's appender and reader (see
        :meth:`.Replica.run`), inside the backplane's connections; call
        :meth:`wait_for_backplane` first (``serve()`` does), or this waits for it too.
        """
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            if self.settings.ping_interval is not None:
                nursery.start_soon(self._ping_loop, self.settings.ping_interval)
            try:
                if self.replica is None:
                    await self._supervise(self._broadcast_loop, task_status)
                else:
                    async with self.replica.backplane.open():
                        await self.replica.start()
                        await self._supervise(self.replica.run, task_status)
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

    async def next_intake(self) -> list[tuple[Subscriber, Publish]] | None:
        """Wait for what clients publish; then take everything waiting, up to about a quarter of
        an outbox's limits (message text counted for bytes). None once the intake is closed
        (shutdown). A checkpoint.

        A burst larger than an outbox so goes out in several bundles with a scheduling round
        between them, in which writers drain their outboxes, instead of overflowing every
        outbox at once.
        """
        try:
            first = await self._intake_receive.receive()
        except trio.EndOfChannel:
            return None
        return self._gather(first)

    async def pause_after_pass(self, busy: float, messages: int, *, from_intake: bool) -> None:
        """After a pass of ``messages`` that took ``busy`` seconds of CPU: pause for
        ``write_delay``, or after a pass longer than ``LONG_PASS``, a quarter as long as the
        pass took if that is longer and there is load.

        Under load, messages gather during the pause and the next bundle carries more of them,
        so each write to a socket carries more frames instead of the writing taking over the
        CPU. A pass that carried ``LOADED_PASS`` messages or more was under load. After a pass
        of fewer, of what the intake held (``from_intake``), the intake is asked after one
        scheduling round, in which the readers with frames waiting submit them: if nothing
        came, there is nothing to gather, and a pause would only add to the next message's
        latency (at 100 msg/s to 1,000 subscribers, p99 ~13-15 ms instead of ~19-22 here).
        The replica's passes come from the shared log, which this cannot see into: they pause
        as under load. Not a checkpoint when there is no pause and ``busy`` is short.
        """
        load = PASS_LOAD_FACTOR * busy if busy > LONG_PASS else 0.0
        if from_intake and messages < LOADED_PASS and load > self.settings.write_delay:
            await trio.lowlevel.checkpoint()  # readers with frames waiting submit them now
            if self._intake_receive.statistics().current_buffer_used == 0:
                load = 0.0  # nothing came: nothing to gather, no need to wait
        pause = max(self.settings.write_delay, load)
        if pause > 0:
            await trio.sleep(pause)

    async def _broadcast_loop(self) -> None:
        """Broadcast what the intake holds, a bundle and a pass per wakeup."""
        while (accepted := await self.next_intake()) is not None:
            started = time.thread_time()  # CPU time: a pass the OS preempted is not "long"
            self._broadcast(accepted)
            busy = time.thread_time() - started
            await self.pause_after_pass(busy, len(accepted), from_intake=True)

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
        if sequenced:
            self.seq += len(sequenced)
            self.publish_sequenced(sequenced)

    def publish_sequenced(self, sequenced: Sequence[Sequenced]) -> None:
        """Keep broadcasts that have their seqs (up to ``self.seq``) in the history and fan
        them out as one bundle, acks in place for their authors. Never blocks."""
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
        a writer started to finish it. False when it took nothing (full, busy, or failed):
        nothing changes, and ``data`` is the caller's to queue or drop."""
        assert subscriber.writer is not None  # DIRECT only with a writer
        written = subscriber.writer.write_nowait(data)
        if written == len(data):
            return True
        if written < 0:
            return False
        subscriber.state = State.QUEUED
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

    # -- with a backplane ---------------------------------------------------------------

    async def wait_for_backplane(self) -> None:
        """Before serving: wait until the backplane answers (if there is one), and learn its
        epoch and history. ``serve()`` calls it before it listens. A checkpoint.

        Raises:
            BackplaneUnavailableError: no answer within ``BACKPLANE_STARTUP_TIMEOUT`` seconds.
        """
        if self.replica is not None:
            async with self.replica.backplane.open():
                await self.replica.start()

    def restart_log(self, epoch: str, seq: int, entries: Sequence[Outgoing], *, lost: bool) -> None:
        """Start from the shared log as it is now: its ``epoch``, its newest ``seq``, a history
        of its newest ``entries``. When the log read before was ``lost``, every client is closed
        with 1012, to resume and learn of the loss from the new epoch."""
        if lost:
            for subscriber in list(self._subscribers.values()):
                self.disconnect(
                    subscriber,
                    CloseConnection("history lost; resume", CloseCode.SERVICE_RESTART),
                )
        self.epoch = epoch
        self.seq = seq
        self._history = History(self.settings.history_size, self.settings.history_ttl)
        for entry in entries:
            self._history.append(entry)

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
