"""The fan-out core: subscribers, their bounded outboxes, the broadcaster task, the slow-consumer
policy. Knows nothing of Quart or sockets.

Data path of one message: a connection's reader calls :meth:`Hub.submit` (awaits room in the
bounded intake: publishers get back-pressure), the broadcaster task (:meth:`Hub.serve`) takes it,
gives it the next ``seq``, encodes it **once** into an :class:`~.protocol.Outgoing` and keeps it in
the history. Everything accepted in one wakeup travels as one :class:`Bundle`: the broadcaster
``send_nowait``\\ s that same bundle into every other subscriber's outbox, one channel operation
per subscriber however many messages it holds (a publisher gets a bundle of its own, with its
acks in place of its own messages). An outbox that would be full, by count or by bytes, gets the
slow-consumer policy: the subscriber is dropped and told to close with 4008. Nothing on that path
awaits per subscriber.

Batching subscribers are *parked* (:meth:`Hub.park`): the hub's tick writes to all of them in one
pass, as soon as something is broadcast and at most every ``write_delay`` or so. The broadcaster
leaves parked subscribers out of its fan-out; the tick queues what each has not had yet, as one
bundle, just before writing to it.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable

import attrs
import structlog
import trio

from ..errors import CloseCode, CloseConnection, SlowConsumerError
from ..ratelimit import RateLimiter
from ..wire.protocol import (
    Outgoing,
    Publish,
    Recovery,
    encode_ack,
    encode_message,
    encode_welcome,
    format_timestamp,
)
from .config import Settings
from .history import History

log = structlog.get_logger("trio_broadcast.server.hub")

INTAKE_SIZE = 1024  # published messages waiting for the broadcaster before readers block
MAX_RESTARTS = 5  # broadcaster crashes tolerated within RESTART_WINDOW before the hub fails
RESTART_WINDOW = 60.0  # seconds
TICK_LOAD_FACTOR = 0.5  # the tick pauses at least half as long as its last pass took
TICK_CHUNK = 25  # parked subscribers written between two checkpoints of a tick pass


@attrs.frozen(eq=False)
class Bundle:
    """Events queued for a subscriber with one channel operation; shared by every outbox that
    gets the same events. Hashes by identity (a key of :attr:`TickPass.frames`)."""

    entries: tuple[Outgoing, ...]
    size: int  # UTF-8 bytes of all entries, counted against outbox_bytes

    @classmethod
    def of(cls, entries: tuple[Outgoing, ...]) -> Bundle:
        return cls(entries, sum(entry.size for entry in entries))


@attrs.frozen
class SharedFrame:
    """A frame the tick writes to every parked subscriber that has the same bundles queued."""

    text: str
    events: int  # events it carries
    created: float  # when its oldest event was accepted


@attrs.define
class TickPass:
    """One pass of the hub's tick, handed to every ``write_nowait`` call in it."""

    now: float  # trio.current_time(), read once per chunk of the pass
    frames: dict[tuple[Bundle, ...], SharedFrame] = attrs.Factory(dict)  # by what they carry
    frames_out: int = 0  # frames written in this pass, counted by the callers
    messages_out: int = 0  # events in them


WriteNowait = Callable[[TickPass], bool]


@attrs.define(eq=False)
class Subscriber:
    """One connected client as the hub sees it.

    The hub owns ``outbox`` (the send end) and closes it when the subscriber leaves; the
    connection owns ``inbox`` and drains it.
    """

    client_id: str  # random, sent in the welcome frame and as ``sender``
    batch: bool  # the client opted in to batched frames
    outbox: trio.MemorySendChannel[Bundle]  # hub side: send_nowait only
    inbox: trio.MemoryReceiveChannel[Bundle]  # connection side: the writer drains it
    limiter: RateLimiter  # publish rate limit of this client
    queued: int = 0  # events in the outbox, against outbox_messages
    queued_bytes: int = 0  # bytes in the outbox, against outbox_bytes
    cursor: int = 0  # while parked: the newest broadcast already queued for it (Hub.park)
    closing: CloseConnection | None = None  # set once: why the connection must close


@attrs.frozen
class Subscription:
    """What :meth:`Hub.subscribe` hands a new connection."""

    subscriber: Subscriber
    welcome: str  # the encoded welcome frame
    replay: list[Outgoing]  # missed broadcasts to send before anything from the outbox
    recovery: Recovery | None  # the ``recovered`` frame, when the client asked to resume


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


class Hub:
    """Subscribers and the broadcaster. Create one per app; run :meth:`serve` in a nursery."""

    def __init__(self, settings: Settings, *, server_name: str) -> None:
        self.settings = settings
        self.server_name = server_name  # sent in welcome frames
        self.epoch = secrets.token_hex(4)  # names this history; new on every start
        self.seq = 0  # the newest broadcast's sequence number
        self.closing = False  # shutting down: no new subscribers
        self.open_sessions = 0  # connections whose task is still running, closing ones included
        self.failed: BaseException | None = None  # set when the broadcaster gave up
        self.failed_event = trio.Event()  # set together with ``failed``
        self._subscribers: dict[str, Subscriber] = {}
        self._history = History(settings.history_size, settings.history_ttl)
        self._intake_send, self._intake_receive = trio.open_memory_channel[
            tuple[Subscriber, Publish]
        ](INTAKE_SIZE)
        self._clients_changed = trio.Event()  # set and replaced when a client comes or goes
        self._ticking = False  # the tick loop runs: park() hands writing over to it
        self._awake: dict[Subscriber, None] = {}  # the broadcaster queues for these at once
        self._parked: dict[Subscriber, tuple[WriteNowait, trio.Event]] = {}
        # Broadcasts after seq _deferred_seq, with their author and the author's ack: parked
        # subscribers get them queued by the tick (see park()).
        self._deferred: list[tuple[Subscriber, Outgoing, Outgoing]] = []
        self._deferred_seq = 0
        self._catch_up_bundles: dict[tuple[int, int], tuple[Bundle, set[Subscriber]]] = {}
        self._broadcast_deferred = trio.Event()  # wakes the tick loop
        self._restarts: collections.deque[float] = collections.deque()
        self._counters = collections.Counter[str]()
        self._frames_out = 0  # plain attributes: bumped once per frame written
        self._messages_out = 0
        self._evictions = collections.Counter[str]()
        self._errors = collections.Counter[str]()

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
    ) -> Subscription:
        """Register a new client, atomically with its resume snapshot.

        ``since`` + ``epoch`` resume after a broadcast (on an epoch mismatch, the newest ``last``
        of this epoch's history, or all of it, is replayed); ``last`` alone asks for the newest
        ``last`` broadcasts. Either way a ``recovered`` frame follows the replay.

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
        # A bundle holds at least one event: the channel never fills before ``queued`` does.
        outbox, inbox = trio.open_memory_channel[Bundle](self.settings.outbox_messages)
        subscriber = Subscriber(
            client_id=client_id,
            batch=batch,
            outbox=outbox,
            inbox=inbox,
            limiter=RateLimiter(
                self.settings.publish_rate,
                self.settings.publish_burst,
                self.settings.rate_limit_strikes,
            ),
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
        self._awake[subscriber] = None
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
        )
        return Subscription(subscriber, welcome, replay, recovery)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber (idempotent, never blocks). Its outbox is closed."""
        if self._subscribers.get(subscriber.client_id) is subscriber:
            del self._subscribers[subscriber.client_id]
            self._notify_clients_changed()
        self._awake.pop(subscriber, None)
        subscriber.outbox.close()
        self.unpark(subscriber)

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
        """Wait until ``predicate()`` holds, re-checking whenever a client comes or goes.

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
        self._stop_ticking()
        for subscriber in list(self._subscribers.values()):
            self.disconnect(
                subscriber, CloseConnection("server shutting down", CloseCode.GOING_AWAY)
            )
        self._intake_send.close()

    def reply(self, subscriber: Subscriber, frame: str) -> None:
        """Queue a frame for one subscriber only (an error); never blocks.

        A parked subscriber is handed back to its writer, which sends it after the broadcasts
        deferred before it.
        """
        self.unpark(subscriber)
        self._offer(subscriber, Bundle.of((Outgoing.of(frame, trio.current_time()),)))

    def count_error(self, code: str) -> None:
        self._errors[code] += 1

    def count_written(self, frames: int, messages: int) -> None:
        """Called by writers after each frame; feeds messages out / frames out."""
        self._frames_out += frames
        self._messages_out += messages

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
        """
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            if self.settings.write_delay:
                self._ticking = True
                nursery.start_soon(self._tick_loop, self.settings.write_delay)
            task_status.started()
            try:
                await self._run_broadcaster()
            except Exception as error:  # noqa: BLE001 - re-raised below, outside the nursery
                failure = error
            finally:
                self._stop_ticking()
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _run_broadcaster(self) -> None:
        while True:
            try:
                await self._broadcast_loop()
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

    def can_park(self, subscriber: Subscriber) -> bool:
        """Whether :meth:`park` would park ``subscriber`` rather than return at once."""
        return self._ticking and self._staying(subscriber)

    def _staying(self, subscriber: Subscriber) -> bool:
        """Still subscribed, and not being closed."""
        return (
            subscriber.closing is None and self._subscribers.get(subscriber.client_id) is subscriber
        )

    async def park(self, subscriber: Subscriber, write_nowait: WriteNowait) -> None:
        """Leave a batching subscriber's writing to the tick until ``write_nowait`` says stop.

        While parked, the subscriber is left out of the broadcaster's fan-out: broadcasts are
        kept in a list shared by all parked subscribers. A tick pass runs as soon as there are
        any, and then at most every ``write_delay`` seconds (longer under load) while more come.
        For each parked subscriber it queues what the subscriber has not had yet, as one bundle,
        into its outbox, and calls ``write_nowait(tick)``, which sends what is queued without
        blocking, counts what it wrote in ``tick``, and returns whether to stay parked. ``tick``
        is the same :class:`TickPass` for every call of one pass, for frames that more than one
        subscriber is written. A thousand parked subscribers then cost the broadcaster nothing
        per message and no task wakes per frame; subscribers at the same point share one bundle.

        Returns when ``write_nowait`` returns False, when the subscriber leaves, when
        :meth:`unpark` is called (also by :meth:`reply`: its writer sends the reply), or at once
        (after a checkpoint) when :meth:`can_park` is False: no tick (``write_delay`` is 0, the
        hub is not serving, or it is shutting down), or the subscriber is closing or gone.
        A checkpoint.
        """
        if not self.can_park(subscriber):
            await trio.lowlevel.checkpoint()
            return
        handed_back = trio.Event()
        subscriber.cursor = self.seq  # it was awake: every broadcast so far is in its outbox
        self._awake.pop(subscriber, None)
        self._parked[subscriber] = (write_nowait, handed_back)
        await handed_back.wait()

    def unpark(self, subscriber: Subscriber) -> None:
        """End :meth:`park` for ``subscriber`` (idempotent).

        A subscriber that stays connected gets the broadcasts deferred for it queued first.
        """
        parked = self._parked.pop(subscriber, None)
        if parked is None:
            return
        if self._staying(subscriber):
            self._catch_up(subscriber)
            if subscriber.closing is None:  # the catch-up did not overflow its outbox
                self._awake[subscriber] = None
        parked[1].set()

    def _catch_up(self, subscriber: Subscriber) -> None:
        """Queue for a parked subscriber, as one bundle, the broadcasts it has not had.

        Subscribers with the same cursor are queued the same bundle, built once; a publisher
        gets a bundle of its own, with its acks in place of its own messages.
        """
        cursor, end = subscriber.cursor, self.seq
        if cursor >= end:
            return
        subscriber.cursor = end
        start = cursor - self._deferred_seq  # its first deferred broadcast
        shared = self._catch_up_bundles.get((cursor, end))
        if shared is None:
            deferred = self._deferred[start:]
            shared = self._catch_up_bundles[cursor, end] = (
                Bundle.of(tuple(entry for _, entry, _ in deferred)),
                {author for author, _, _ in deferred},
            )
        bundle, authors = shared
        delivered = len(bundle.entries)
        if subscriber in authors:
            deferred = self._deferred[start:]
            bundle = Bundle.of(
                tuple(ack if author is subscriber else entry for author, entry, ack in deferred)
            )
            delivered -= sum(author is subscriber for author, _, _ in deferred)
        if self._offer(subscriber, bundle):
            self._counters["deliveries"] += delivered

    def _trim_deferred(self) -> None:
        """Forget deferred broadcasts that every parked subscriber has had."""
        oldest = min((subscriber.cursor for subscriber in self._parked), default=self.seq)
        del self._deferred[: oldest - self._deferred_seq]
        self._deferred_seq = oldest
        self._catch_up_bundles.clear()

    async def _tick_loop(self, write_delay: float) -> None:
        """Write for every parked subscriber in one pass: no task wakes for it.

        A pass runs when something was broadcast since the last one began, after a pause of
        ``write_delay``, or half as long as the last pass took (CPU time) if that is longer:
        under load frames grow instead of the writing taking over the CPU. Every ``TICK_CHUNK``
        subscribers the pass lets other tasks run for a round, so messages keep being accepted
        during a long pass and reach the rest of it.
        """
        while True:
            await self._broadcast_deferred.wait()
            self._broadcast_deferred = trio.Event()
            busy = 0.0
            tick = TickPass(now=trio.current_time())
            parked = list(self._parked)
            for start in range(0, len(parked), TICK_CHUNK):
                if start:
                    await trio.lowlevel.checkpoint()
                    tick.now = trio.current_time()
                started = time.thread_time()  # CPU time: a pass the OS preempted is not "long"
                for subscriber in parked[start : start + TICK_CHUNK]:
                    writing = self._parked.get(subscriber)  # None: it left during a checkpoint
                    if writing is None:
                        continue
                    self._catch_up(subscriber)
                    if subscriber in self._parked and not writing[0](tick):
                        self.unpark(subscriber)
                busy += time.thread_time() - started
            self._trim_deferred()
            self.count_written(tick.frames_out, tick.messages_out)
            await trio.sleep(max(write_delay, TICK_LOAD_FACTOR * busy))

    def _stop_ticking(self) -> None:
        self._ticking = False
        for subscriber in list(self._parked):
            self.unpark(subscriber)

    def _fail(self, error: BaseException) -> None:
        self.failed = error
        for subscriber in list(self._subscribers.values()):
            self.disconnect(
                subscriber, CloseConnection("server unavailable", CloseCode.INTERNAL_ERROR)
            )
        self.failed_event.set()

    async def _broadcast_loop(self) -> None:
        """Broadcast what the intake holds, a bundle per wakeup.

        A bundle takes everything queued, up to about a quarter of an outbox's limits (message
        text counted for bytes): a burst larger than an outbox then goes out in several bundles
        with a scheduling round between them, in which writers that keep up drain their
        outboxes, instead of overflowing every outbox at once.
        """
        receive_nowait = self._intake_receive.receive_nowait
        max_events = max(1, self.settings.outbox_messages // 4)
        max_chars = self.settings.outbox_bytes // 4
        async for first in self._intake_receive:
            accepted = [first]
            chars = len(first[1].message)
            while len(accepted) < max_events and chars < max_chars:
                try:
                    accepted.append(receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                chars += len(accepted[-1][1].message)
            self._broadcast(accepted)

    def _broadcast(self, accepted: list[tuple[Subscriber, Publish]]) -> None:
        """Sequence, encode and fan out messages accepted together, in order."""
        timestamp = format_timestamp(time.time())
        now = trio.current_time()
        sequenced: list[tuple[Subscriber, Publish, Outgoing]] = []
        for sender, publish in accepted:
            seq = self.seq + len(sequenced) + 1
            try:
                frame = encode_message(seq, publish.message, timestamp, sender.client_id)
                entry = Outgoing.of(frame, now, seq)
            except UnicodeEncodeError:  # lone surrogates; Publish.from_text refuses them
                log.exception("unencodable_broadcast_dropped", client_id=sender.client_id)
                continue
            sequenced.append((sender, publish, entry))
        if not sequenced:
            return
        entries = [entry for _, _, entry in sequenced]
        acks = [
            Outgoing.of(encode_ack(entry.seq, timestamp, publish.id), now, entry.seq)
            for _, publish, entry in sequenced
        ]
        self.seq += len(entries)
        for entry in entries:
            self._history.append(entry)
        self._counters["messages_in"] += len(entries)
        if self._parked:  # the tick queues these for parked subscribers
            authors = [sender for sender, _, _ in sequenced]
            self._deferred.extend(zip(authors, entries, acks, strict=True))
            self._broadcast_deferred.set()
        else:
            self._deferred.clear()
            self._deferred_seq = self.seq
        senders = {sender for sender, _, _ in sequenced}
        bundle = Bundle.of(tuple(entries))
        count, size = len(entries), bundle.size
        room_count = self.settings.outbox_messages - count  # queued at most this, before
        room_bytes = self.settings.outbox_bytes - size
        delivered = 0
        evicted: list[Subscriber] = []
        for subscriber in self._awake:  # the hot loop: _offer() inlined
            if subscriber in senders:
                continue
            if subscriber.queued > room_count or subscriber.queued_bytes > room_bytes:
                evicted.append(subscriber)
                continue
            try:
                subscriber.outbox.send_nowait(bundle)
            except trio.WouldBlock:  # pragma: no cover - the channel holds outbox_messages
                evicted.append(subscriber)
                continue
            subscriber.queued += count
            subscriber.queued_bytes += size
            delivered += count
        for subscriber in evicted:
            self._evict_slow(subscriber)
        for sender in senders:
            if sender.closing is not None or sender not in self._awake:
                continue
            # Its own messages come back as acks, in their place among the others'.
            own = tuple(
                ack if author is sender else entry
                for (author, _, entry), ack in zip(sequenced, acks, strict=True)
            )
            if self._offer(sender, Bundle.of(own)):
                delivered += sum(author is not sender for author, _, _ in sequenced)
        self._counters["deliveries"] += delivered

    def _offer(self, subscriber: Subscriber, bundle: Bundle) -> bool:
        """Queue ``bundle`` for ``subscriber``, or evict it if its outbox has no room for it.

        Returns whether it was queued.
        """
        if subscriber.closing is not None:
            return False
        settings = self.settings
        if (
            subscriber.queued + len(bundle.entries) > settings.outbox_messages
            or subscriber.queued_bytes + bundle.size > settings.outbox_bytes
        ):
            self._evict_slow(subscriber)
            return False
        try:
            subscriber.outbox.send_nowait(bundle)
        except trio.WouldBlock:  # pragma: no cover - the channel holds outbox_messages bundles
            self._evict_slow(subscriber)
            return False
        except trio.ClosedResourceError:
            return False
        subscriber.queued += len(bundle.entries)
        subscriber.queued_bytes += bundle.size
        return True

    def _evict_slow(self, subscriber: Subscriber) -> None:
        self._evictions["slow_consumer"] += 1
        log.warning(
            "evicted",
            client_id=subscriber.client_id,
            reason="slow_consumer",
            queued=subscriber.queued,
            queued_bytes=subscriber.queued_bytes,
        )
        self.disconnect(subscriber, SlowConsumerError("slow consumer: outbox overflowed"))

    def count_eviction(self, reason: str) -> None:
        self._evictions[reason] += 1

    # -- introspection -------------------------------------------------------------------

    def statistics(self) -> HubStatistics:
        depths = [  # a parked subscriber's deferred broadcasts count as queued
            subscriber.queued + (self.seq - subscriber.cursor if subscriber in self._parked else 0)
            for subscriber in self._subscribers.values()
        ]
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
        )
