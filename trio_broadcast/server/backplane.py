"""The backplane: what several server processes share to give one audience one order. Pure.

With a backplane (``redis_url``), a server does not sequence messages itself. Its broadcaster
*appends* what its clients publish to one log shared by every server, and one *reader* task per
process reads that log back and fans each entry out to this process's clients, the way the hub
fans out its own broadcasts without one. The log gives each entry its ``seq``: an integer that
grows by one per broadcast across the whole cluster. Its ``epoch`` is kept beside it and changes
only when the log itself was lost.

This module holds the pure parts: what one entry carries (:class:`Record`), what an append
carries (:class:`AppendRequest`), the Redis keys and the Lua scripts, and the reconnect backoff.
The I/O is in :mod:`.redis_backplane` (loaded only when ``redis_url`` is set); the hub talks to
it through the :class:`Backplane` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

import attrs

RECORD_FIELDS = ("m", "s", "t", "n", "p")  # message, sender, timestamp, node, publish key


@attrs.frozen
class AppendRequest:
    """One accepted publish, on its way to the log."""

    key: int  # this node's number for the publish: its author gets the ack when it comes back
    sender: str  # the author's client_id
    message: str  # the text to broadcast


@attrs.frozen
class Record:
    """One entry of the log, as the reader gets it back."""

    seq: int  # its place in the cluster-wide order
    message: str
    sender: str  # the author's client_id
    timestamp: str  # ISO 8601, set by the author's node when it appended
    node: str  # the author's node
    key: int  # the author node's number for the publish
    entry_id: str  # the stream entry's ID: ``<seq>-1``

    @classmethod
    def from_entry(cls, entry_id: str, fields: Mapping[str, str]) -> Record:
        """Decode one stream entry.

        Raises:
            ValueError: the entry is not one this module wrote (a foreign writer on our keys).
        """
        head, _, _ = entry_id.partition("-")
        try:
            return cls(
                seq=int(head),
                message=fields["m"],
                sender=fields["s"],
                timestamp=fields["t"],
                node=fields["n"],
                key=int(fields["p"]),
                entry_id=entry_id,
            )
        except KeyError as missing:
            raise ValueError(f"stream entry {entry_id} lacks field {missing}") from None

    def age(self, unix_now: float) -> float:
        """Seconds since the author's node appended it (0 if its clock was ahead)."""
        try:
            appended = datetime.fromisoformat(self.timestamp).timestamp()
        except ValueError:
            return 0.0
        return max(0.0, unix_now - appended)


@attrs.frozen
class ReadTo:
    """How far a node has read the log: the epoch it read (None: none yet) and the newest seq
    of it. A log with that epoch whose counter is below that seq went back in time (Redis came
    back from an older snapshot): the scripts then start a new epoch, as for a lost log."""

    epoch: str | None = None
    seq: int = 0

    def args(self) -> list[str | int]:
        return [self.epoch or "", self.seq]


@attrs.frozen
class Keys:
    """The Redis keys of one deployment. One hash tag: a script's keys share a cluster slot."""

    prefix: str

    @property
    def epoch(self) -> str:
        return f"{self.prefix}{{log}}:epoch"  # the log's name; SET NX, new only when it was lost

    @property
    def seq(self) -> str:
        return f"{self.prefix}{{log}}:seq"  # the newest seq given (INCR)

    @property
    def stream(self) -> str:
        return f"{self.prefix}{{log}}:stream"  # the log: entry ``<seq>-1`` per broadcast

    @property
    def marks(self) -> str:
        # When entries were appended, for trimming by age: a sorted set of seqs scored by
        # Redis's clock in ms, one for the first entry appended in each second or more.
        return f"{self.prefix}{{log}}:marks"

    def all(self) -> list[str]:
        return [self.epoch, self.seq, self.stream, self.marks]

    @property
    def nodes(self) -> str:
        return f"{self.prefix}{{log}}:nodes"  # the nodes that reported a count (SADD)

    @property
    def node_prefix(self) -> str:
        return f"{self.prefix}{{log}}:node:"  # + node: its connection count, with a TTL


# The scripts take KEYS = (epoch, seq, stream, marks) and ARGV[1..3] = an epoch to create, and
# the caller's ReadTo (epoch read, newest seq read). No epoch means Redis lost (or never had) the
# log; the caller's epoch with a counter below what the caller read means Redis lost its newest
# part (it came back from an older snapshot), and entries it gives out now would reuse seqs
# that clients have had. Either way counter, stream and marks start afresh, under a new epoch,
# atomically with whatever the script then does.
_ENSURE_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch or (epoch == ARGV[2]
    and tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[3])) then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
"""

ENSURE_EPOCH_SCRIPT = _ENSURE_EPOCH + "return epoch\n"

# ARGV: epoch to create, ReadTo (2), MAXLEN, whether to mark (1) or not (0), node, timestamp,
# then (key, sender, message) per publish. Returns {epoch, first seq given}. INCR and XADD in
# one script: no two entries share a seq, and seq order is stream order. Marking (when the
# stream is trimmed by age): the batch's first seq joins the marks if the newest mark is a
# second old or more, so every entry was appended less than a second after the newest mark at
# or below its seq.
APPEND_SCRIPT = (
    _ENSURE_EPOCH
    + """
local first = 0
for i = 8, #ARGV, 3 do
  local seq = redis.call('INCR', KEYS[2])
  if first == 0 then first = seq end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], seq .. '-1',
    'm', ARGV[i + 2], 's', ARGV[i + 1], 't', ARGV[7], 'n', ARGV[6], 'p', ARGV[i])
end
if ARGV[5] == '1' and first > 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local newest = redis.call('ZREVRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if #newest == 0 or now - tonumber(newest[2]) >= 1000 then
    redis.call('ZADD', KEYS[4], now, first)
  end
end
return {epoch, first}
"""
)

# KEYS = (stream, marks); ARGV = the age in ms beyond which entries go. The newest mark at least
# that old says where: every entry below its seq was appended before it, so is older. Entries
# from that mark on stay (up to a second longer than the age), and so does that mark. Returns
# how many entries went.
TRIM_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local mark = redis.call('ZREVRANGEBYSCORE', KEYS[2], cutoff, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #mark == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. mark[2])
return redis.call('XTRIM', KEYS[1], 'MINID', mark[1] .. '-1')
"""


# KEYS = (nodes, epoch); ARGV = node, its connections, TTL in ms, the node keys' prefix. Sets
# this node's count (it expires unless reported again), and returns the sum over every node
# whose count has not expired, forgetting the others (a node that died drops out within the
# TTL), and the log's epoch (false if none), for a node to notice a new one without an error.
REPORT_SCRIPT = """
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local count = redis.call('GET', ARGV[4] .. node)
  if count then total = total + tonumber(count) else redis.call('SREM', KEYS[1], node) end
end
return {total, redis.call('GET', KEYS[2])}
"""


def append_args(
    candidate_epoch: str,
    read_to: ReadTo,
    max_length: int,
    mark: bool,
    node: str,
    timestamp: str,
    requests: Sequence[AppendRequest],
) -> list[str | int]:
    """ARGV of :data:`APPEND_SCRIPT` for one batch of publishes."""
    args: list[str | int] = [candidate_epoch, *read_to.args(), max_length, int(mark)]
    args += [node, timestamp]
    for request in requests:
        args += [request.key, request.sender, request.message]
    return args


class Backoff:
    """Reconnect delays: ``first`` seconds, doubling up to ``limit``; :meth:`reset` on success."""

    def __init__(self, first: float = 0.05, limit: float = 2.0) -> None:
        self._first = first  # seconds
        self._limit = limit  # seconds
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._limit, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self._first


class Backplane(Protocol):
    """What the hub needs of a shared log (:class:`.redis_backplane.RedisBackplane`).

    Every method but :meth:`open` may raise :class:`~..errors.BackplaneUnavailableError`; each is a
    checkpoint, and cancelling one leaves the log as it was or with the whole call done.
    """

    def open(self) -> AbstractAsyncContextManager[None]:
        """Own the connections for the life of the ``async with``."""

    async def ensure_epoch(self, candidate: str, read_to: ReadTo) -> str:
        """The log's epoch; ``candidate`` becomes it (with an empty log) if there was none, or
        if the log went back in time behind ``read_to``."""

    async def newest(self, count: int) -> list[Record]:
        """The newest ``count`` entries (at least one, if there is any), oldest first."""

    async def read(self, after: str, count: int) -> list[Record]:
        """Entries after the ID ``after``, at most ``count``; waits a while for one (a
        blocking read) and returns none if none came."""

    async def append(
        self,
        candidate_epoch: str,
        read_to: ReadTo,
        node: str,
        timestamp: str,
        requests: Sequence[AppendRequest],
    ) -> str:
        """Append ``requests`` to the log, in order, each with the next seq (to a new log
        named ``candidate_epoch`` when :meth:`ensure_epoch` would start one); returns the epoch
        they were appended to."""

    async def report(self, node: str, connections: int, ttl: float) -> tuple[int, str | None]:
        """Report this node's connection count (kept ``ttl`` seconds unless reported again);
        returns the count of every node, this one included, whose report has not expired, and
        the log's epoch (None: there is no log)."""

    async def trim(self) -> int:
        """Drop the entries older than the log's age limit (none if it has no limit); returns
        how many went."""
