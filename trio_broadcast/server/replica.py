"""This process as one replica of the shared log: the hub's side of the backplane.

Without a backplane, the hub's broadcaster sequences what its clients publish itself. With one
(``redis_url``), a :class:`Replica` takes over that task's work, in three loops:

- **append** (in the broadcaster's place): what the hub's intake holds goes to the log in one
  call per batch; each publish is remembered under a node-local key until it comes back;
- **read**: the log's entries, from the last one read, are kept in the hub's history and fanned
  out by the hub's own pass; an entry this node appended gives its author the ``ack``;
- **report**: this node's connection count, the cluster's in return, and trimming the log.

When the log's epoch is not the one read before, Redis lost the log: the hub starts afresh from
what the log holds now and closes every client with 1012 (see :meth:`.Hub.restart_log`). The I/O
is the :class:`~.backplane.Backplane`'s; every failure of it arrives here as
:class:`~..errors.BackplaneUnavailableError`, and what it means for clients is decided here.
"""

from __future__ import annotations

import contextlib
import enum
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
import trio

from ..errors import BackplaneUnavailableError, ErrorCode
from ..wire.protocol import Outgoing, encode_ack, encode_error, encode_message, format_timestamp
from .backplane import AppendRequest, Backoff, Backplane, ReadTo, Record

if TYPE_CHECKING:
    from .hub import Hub, Sequenced, Subscriber

log = structlog.get_logger("trio_broadcast.server.replica")

BACKPLANE_STARTUP_TIMEOUT = 30.0  # seconds start-up waits for the backplane before failing
REPORT_INTERVAL = 2.0  # seconds between two reports of this node's connection count
REPORT_TTL = 3 * REPORT_INTERVAL  # seconds a node's count lasts unless reported again
# Entries of this node's the appender may have in the log before its reader has read them. The
# log is trimmed to a length (at least app.MIN_STREAM_LENGTH): an appender that ran further ahead
# of a reader busy with fan-out had its entries trimmed before they were read, lost to every
# client of the node (seen at ~30k publishes/s through one process).
MAX_AHEAD = 1024


class BackplaneState(enum.Enum):
    """Whether the backplane (``redis_url``) answers; ``NONE`` without one."""

    NONE = "none"  # no backplane: one process, in memory
    CONNECTING = "connecting"  # starting up
    UP = "up"  # the reader's last call and every append since succeeded
    DOWN = "down"  # unreachable: publishes are refused with backplane_unavailable


class Replica:
    """Appends what ``hub``'s clients publish to the shared log, and fans out what it reads."""

    def __init__(self, hub: Hub, backplane: Backplane) -> None:
        self.hub = hub
        self.backplane = backplane
        self.state = BackplaneState.CONNECTING
        self.node_id = secrets.token_hex(4)  # names this process in the log's entries
        self.cluster_connections: int | None = None  # every node's, once known
        self._log_epoch: str | None = None  # the epoch of the log read, once read
        self._last_id = "0-0"  # the newest log entry read
        self._next_key = 0  # numbers this node's publishes, to match them when they come back
        self._pending: dict[int, tuple[Subscriber, str | None]] = {}  # key -> author, its id
        self._own_read = 0  # the newest key of this node's that the reader has seen (or gave up)
        self._caught_up: trio.Event | None = None  # the appender waits for the reader (MAX_AHEAD)
        self._stale = False  # a report saw another epoch: the reader is to sync before reading

    async def start(self) -> None:
        """Learn the log's epoch and fill the history from it, retrying with backoff for up to
        ``BACKPLANE_STARTUP_TIMEOUT`` seconds. Inside ``backplane.open()``.

        Raises:
            BackplaneUnavailableError: the backplane did not answer in that time.
        """
        backoff = Backoff()
        last = "no answer"
        with trio.move_on_after(BACKPLANE_STARTUP_TIMEOUT):
            while True:
                try:
                    await self._sync()
                except BackplaneUnavailableError as error:
                    log.warning("backplane_unavailable", error=str(error), during="start-up")
                    last = str(error)
                    await trio.sleep(backoff.next())
                    continue
                self._set_state(BackplaneState.UP)
                return
        raise BackplaneUnavailableError(
            f"no Redis backplane within {BACKPLANE_STARTUP_TIMEOUT:g} s ({last})"
        )

    async def run(self) -> None:
        """The appender (here), the reader and the reporter (tasks) until the hub's intake
        closes (shutdown). Inside ``backplane.open()``, after :meth:`start`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_loop)
            nursery.start_soon(self._report_loop)
            await self._append_loop()
            nursery.cancel_scope.cancel()

    async def _sync(self) -> None:
        """After (re)connecting: if the log's epoch is not ours, Redis lost the log (or this is
        the start): the hub starts afresh from the log's newest entries."""
        epoch = await self.backplane.ensure_epoch(secrets.token_hex(4), self._read_to())
        self._stale = False
        if epoch == self._log_epoch:
            return
        hub = self.hub
        newest = await self.backplane.newest(hub.settings.history_size)
        lost = self._log_epoch is not None  # we had read another epoch's log: it is gone
        if lost:
            log.warning("backplane_epoch_changed", old=hub.epoch, new=epoch)
            self._pending.clear()
            self._read_own(self._next_key)
        self._log_epoch = epoch
        now, unix_now = trio.current_time(), time.time()
        kept = newest[-hub.settings.history_size :] if hub.settings.history_size else []
        entries = [_encode(record, now - record.age(unix_now)) for record in kept]
        hub.restart_log(epoch, newest[-1].seq if newest else 0, entries, lost=lost)
        self._last_id = newest[-1].entry_id if newest else "0-0"

    async def _append_loop(self) -> None:
        """Append what the intake holds to the log, a batch (one script call) per wakeup.

        What comes in while one batch is on its way makes the next. A batch that cannot reach
        the log is refused: each author whose publish is still waiting for its entry gets a
        ``backplane_unavailable`` error.
        """
        while (accepted := await self.hub.next_intake()) is not None:
            while self._next_key - self._own_read >= MAX_AHEAD:  # the reader is far behind
                caught_up = self._caught_up = trio.Event()
                await caught_up.wait()
            requests = []
            for sender, publish in accepted:
                self._next_key += 1
                self._pending[self._next_key] = (sender, publish.id)
                requests.append(AppendRequest(self._next_key, sender.client_id, publish.message))
            timestamp = format_timestamp(time.time())
            try:
                await self.backplane.append(
                    secrets.token_hex(4), self._read_to(), self.node_id, timestamp, requests
                )
            except BackplaneUnavailableError as error:
                self._down(error, "append")
                self._read_own(requests[-1].key)  # not to be waited for: maybe never appended
                for request in requests:
                    # Gone already if the reader delivered it: Redis ran the script, the reply
                    # was lost. Then the author had its ack, and gets no error.
                    waiting = self._pending.pop(request.key, None)
                    if waiting is not None:
                        self._refuse_unavailable(*waiting)

    async def _report_loop(self) -> None:
        """Every ``REPORT_INTERVAL`` seconds: report this node's connections, learn the
        cluster's (every node's whose report is younger than ``REPORT_TTL``), and trim the log
        by age. A log epoch other than the one read (another node started a new log, and this
        node's reader saw no error) has the reader sync before its next read."""
        while True:
            # On an error, the reader notices and reports it; the last count stands meanwhile.
            with contextlib.suppress(BackplaneUnavailableError):
                total, epoch = await self.backplane.report(
                    self.node_id, self.hub.connection_count, REPORT_TTL
                )
                if epoch != self._log_epoch:
                    self._stale = True
                if total != self.cluster_connections:
                    self.cluster_connections = total
                    self.hub.notify_changed()  # wakes wait_until
                await self.backplane.trim()
            await trio.sleep(REPORT_INTERVAL)

    async def _read_loop(self) -> None:
        """Read the log from the last entry read and fan each batch out; after an error, try
        again with backoff (first checking that the log is still the one we read)."""
        count = max(1, self.hub.settings.outbox_messages // 4)
        backoff = Backoff()
        synced = True
        while True:
            try:
                if not synced or self._stale:
                    await self._sync()
                    synced = True
                records = await self.backplane.read(self._last_id, count)
            except BackplaneUnavailableError as error:
                self._down(error, "read")
                synced = False
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            if self.state is not BackplaneState.UP:
                log.info("backplane_available")
                self._set_state(BackplaneState.UP)
            if records:
                started = time.thread_time()
                self._deliver(records)
                busy = time.thread_time() - started
                await self.hub.pause_after_pass(busy, len(records), from_intake=False)

    def _deliver(self, records: Sequence[Record]) -> None:
        """Hand entries read from the log to the hub; a local author gets its ack in place of
        its own message. Never blocks, never awaits."""
        hub = self.hub
        now = trio.current_time()
        sequenced: list[Sequenced] = []
        for record in records:
            self._last_id = record.entry_id
            own = record.node == self.node_id
            if own:
                self._read_own(record.key)
            if record.seq <= hub.seq:  # read already (the history was filled past it)
                continue
            if record.seq != hub.seq + 1:
                log.warning("backplane_gap", after=hub.seq, next=record.seq)
            hub.seq = record.seq
            author = ack = None
            if own:
                waiting = self._pending.pop(record.key, None)
                if waiting is not None:
                    author = waiting[0]
                    ack = Outgoing.of(
                        encode_ack(record.seq, record.timestamp, waiting[1]), now, record.seq
                    )
            sequenced.append((author, _encode(record, now), ack))
        if sequenced:
            hub.publish_sequenced(sequenced)

    def _read_own(self, key: int) -> None:
        """This node's entries up to ``key`` are read (or will never be): the appender may run
        that much further ahead."""
        if key > self._own_read:
            self._own_read = key
            if self._caught_up is not None and self._next_key - key < MAX_AHEAD:
                self._caught_up.set()
                self._caught_up = None

    def _read_to(self) -> ReadTo:
        return ReadTo(self._log_epoch, self.hub.seq)

    def _refuse_unavailable(self, author: Subscriber, id_: str | None) -> None:
        self.hub.count_error(ErrorCode.BACKPLANE_UNAVAILABLE)
        self.hub.reply(
            author,
            encode_error(
                ErrorCode.BACKPLANE_UNAVAILABLE,
                "the backplane is unreachable; the message was not confirmed",
                id_,
            ),
        )

    def _down(self, error: BackplaneUnavailableError, during: str) -> None:
        if self.state is not BackplaneState.DOWN:
            log.warning("backplane_unavailable", error=str(error), during=during)
            self._set_state(BackplaneState.DOWN)

    def _set_state(self, state: BackplaneState) -> None:
        self.state = state
        self.hub.notify_changed()  # wakes wait_until


def _encode(record: Record, created: float) -> Outgoing:
    return Outgoing.of(
        encode_message(record.seq, record.message, record.timestamp, record.sender),
        created,
        record.seq,
    )
