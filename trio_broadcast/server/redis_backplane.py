"""The backplane on Redis (coredis, which runs on anyio and so under Trio). Loaded only when
``redis_url`` is set.

Two clients, each with its own connection: the reader's blocks in ``XREAD``, the writer's carries
the appends (one Lua script call per batch) and everything else. Every Redis or socket error
becomes :class:`~.backplane.BackplaneUnavailableError` here, at the edge; the hub decides what it
means for clients. Calls are plain awaits in loops the hub owns (no ``async for`` over coredis
iterators, which can end silently when Redis restarts).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import coredis
from coredis.commands.script import Script
from coredis.connection import TCPLocation
from coredis.exceptions import RedisError
from coredis.response.types import StreamEntry
from coredis.retry import NoRetryPolicy

from ..errors import BackplaneUnavailableError
from .backplane import (
    APPEND_SCRIPT,
    ENSURE_EPOCH_SCRIPT,
    REPORT_SCRIPT,
    TRIM_SCRIPT,
    AppendRequest,
    Keys,
    ReadTo,
    Record,
    append_args,
)

CONNECT_TIMEOUT = 2.0  # seconds to open a connection to Redis
COMMAND_TIMEOUT = 10.0  # seconds Redis has to answer a command (longer than READ_BLOCK)
READ_BLOCK = 2.0  # seconds one XREAD waits for new entries before it returns none
DEFAULT_PORT = 6379


# What a coredis connection's anyio stream may raise when Redis goes away mid-command (coredis
# normally wraps them in its ConnectionError).
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Turn what Redis or the network raises into :class:`BackplaneUnavailableError`."""
    try:
        yield
    except (RedisError, OSError, TimeoutError, *_STREAM_ERRORS) as error:
        raise BackplaneUnavailableError(f"{what}: {type(error).__name__}: {error}") from error


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


def _record(entry: StreamEntry) -> Record:
    fields = {_text(name): _text(value) for name, value in entry.field_values.items()}
    return Record.from_entry(_text(entry.identifier), fields)


class RedisBackplane:
    """The log as one Redis Stream (see :mod:`.backplane` for the keys and scripts)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        max_length: int,
        max_age: float | None,
        cluster: bool = False,
    ) -> None:
        self.url = url  # redis://, rediss:// or unix://
        self.cluster = cluster  # ``url`` names a node of a Redis Cluster
        self.keys = Keys(prefix)
        self.max_length = max_length  # the stream is trimmed to about this many entries
        self.max_age = max_age  # seconds; :meth:`trim` drops older entries (None: never)
        self._reader: coredis.Redis[str] | coredis.RedisCluster[str] | None = None
        self._writer: coredis.Redis[str] | coredis.RedisCluster[str] | None = None
        self._append: Script[str] | None = None
        self._ensure: Script[str] | None = None
        self._report: Script[str] | None = None
        self._trim: Script[str] | None = None

    def _client(self) -> coredis.Redis[str] | coredis.RedisCluster[str]:
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "stream_timeout": COMMAND_TIMEOUT,
            # No retries inside coredis: an append retried after its reply was lost would run
            # twice (two seqs for one publish). The hub decides what a failure means.
            "retry_policy": NoRetryPolicy(),
        }
        if not self.cluster:
            return coredis.Redis.from_url(self.url, decode_responses=True, **options)
        # Every key shares one hash tag, so in a cluster each script runs on the one node that
        # holds the log's slot; the cluster client finds it from the node the URL names (given
        # as a TCPLocation: coredis 6.9's from_url would pass it in a deprecated form).
        url = urlsplit(self.url)
        start = TCPLocation(url.hostname or "localhost", url.port or DEFAULT_PORT)
        return coredis.RedisCluster.from_url(
            self.url, decode_responses=True, startup_nodes=[start], **options
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        """Own both clients (and coredis's tasks) until the block ends. Does not connect: the
        first command does, and a failed one is tried again on the next call."""
        reader, writer = self._client(), self._client()
        async with reader, writer:
            self._reader, self._writer = reader, writer
            self._append = writer.register_script(APPEND_SCRIPT)
            self._ensure = writer.register_script(ENSURE_EPOCH_SCRIPT)
            self._report = writer.register_script(REPORT_SCRIPT)
            self._trim = writer.register_script(TRIM_SCRIPT)
            try:
                yield
            finally:
                self._reader = self._writer = self._append = self._ensure = None
                self._report = self._trim = None

    async def ensure_epoch(self, candidate: str, read_to: ReadTo) -> str:
        assert self._ensure is not None, "use inside open()"
        args = [candidate, *read_to.args()]
        with _unavailable("ensure epoch"):
            epoch: object = await self._ensure(keys=self.keys.all(), args=args)
        return _text(epoch) if isinstance(epoch, str | bytes) else str(epoch)

    async def newest(self, count: int) -> list[Record]:
        assert self._writer is not None, "use inside open()"
        with _unavailable("read newest"):
            entries = await self._writer.xrevrange(self.keys.stream, count=max(1, count))
        return [_record(entry) for entry in entries][::-1]

    async def read(self, after: str, count: int) -> list[Record]:
        assert self._reader is not None, "use inside open()"
        with _unavailable("read"):
            result = await self._reader.xread(
                {self.keys.stream: after},
                count=count,
                block=datetime.timedelta(seconds=READ_BLOCK),
            )
        if not result:
            return []
        entries = result.get(self.keys.stream, ())
        return [_record(entry) for entry in entries]

    async def append(
        self,
        candidate_epoch: str,
        read_to: ReadTo,
        node: str,
        timestamp: str,
        requests: Sequence[AppendRequest],
    ) -> str:
        assert self._append is not None, "use inside open()"
        mark = self.max_age is not None
        args = append_args(
            candidate_epoch, read_to, self.max_length, mark, node, timestamp, requests
        )
        with _unavailable("append"):
            reply: object = await self._append(keys=self.keys.all(), args=args)
        if not isinstance(reply, list | tuple) or not isinstance(reply[0], str | bytes):
            raise BackplaneUnavailableError(f"append: unexpected reply {reply!r}")
        return _text(reply[0])

    async def report(self, node: str, connections: int, ttl: float) -> tuple[int, str | None]:
        assert self._report is not None, "use inside open()"
        args: list[str | int] = [node, connections, int(ttl * 1000), self.keys.node_prefix]
        with _unavailable("report"):
            reply: object = await self._report(keys=[self.keys.nodes, self.keys.epoch], args=args)
        if not isinstance(reply, list | tuple) or not isinstance(reply[0], int | str | bytes):
            raise BackplaneUnavailableError(f"report: unexpected reply {reply!r}")
        epoch = reply[1] if len(reply) > 1 and isinstance(reply[1], str | bytes) else None
        return int(reply[0]), None if epoch is None else _text(epoch)

    async def trim(self) -> int:
        if self.max_age is None:
            return 0
        assert self._trim is not None, "use inside open()"
        args = [int(self.max_age * 1000)]
        with _unavailable("trim"):
            removed: object = await self._trim(keys=[self.keys.stream, self.keys.marks], args=args)
        return int(removed) if isinstance(removed, int | str | bytes) else 0
