"""The bounded history of broadcasts that lets a reconnecting client resume. Pure, no I/O."""

from __future__ import annotations

import collections
from collections.abc import Iterator

from ..wire.protocol import Outgoing, Recovery


class History:
    """The newest broadcasts, bounded by count (``size``) and age (``ttl`` seconds).

    Sequence numbers in it are contiguous: it only ever drops from the old end.
    """

    def __init__(self, size: int, ttl: float | None) -> None:
        self._entries: collections.deque[Outgoing] = collections.deque(maxlen=size or 1)
        self._size = size  # 0 keeps nothing
        self._ttl = ttl  # seconds; None keeps entries until they are pushed out by count

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(self._entries)

    def append(self, entry: Outgoing) -> None:
        if self._size:
            self._entries.append(entry)

    def expire(self, now: float) -> None:
        """Drop entries older than ``ttl`` (``now`` on the clock of ``Outgoing.created``)."""
        if self._ttl is None:
            return
        oldest_allowed = now - self._ttl
        while self._entries and self._entries[0].created < oldest_allowed:
            self._entries.popleft()

    def recover(
        self,
        since: int,
        epoch_matches: bool,
        current_seq: int,
        now: float,
        last: int | None = None,
    ) -> tuple[list[Outgoing], Recovery]:
        """The broadcasts after ``since`` that are still here, and how complete they are.

        When the epoch does not match (or ``since`` is from the future), the client has seen
        nothing of this history: it gets all of it (the newest ``last`` of it, if given), and the
        recovery says ``epoch_mismatch``.
        """
        self.expire(now)
        if not epoch_matches or since > current_seq or since < 0:
            replay = self._newest(last)
            return replay, Recovery(
                complete=False,
                reason="epoch_mismatch",
                since=since,
                first_seq=replay[0].seq if replay else None,
                replayed=len(replay),
                seq=current_seq,
            )
        if since == current_seq:
            return [], Recovery(complete=True, since=since, replayed=0, seq=current_seq)
        first_seq = self._entries[0].seq if self._entries else current_seq + 1
        if since + 1 >= first_seq:
            start = since + 1 - first_seq
            replay = [self._entries[i] for i in range(start, len(self._entries))]
            return replay, Recovery(
                complete=True, since=since, replayed=len(replay), seq=current_seq
            )
        replay = list(self._entries)
        return replay, Recovery(
            complete=False,
            reason="history_expired",
            since=since,
            first_seq=first_seq,
            replayed=len(replay),
            seq=current_seq,
        )

    def latest(self, count: int, current_seq: int, now: float) -> tuple[list[Outgoing], Recovery]:
        """The newest ``count`` broadcasts still here, for a new client that asked for them.

        The recovery is complete: the client has everything after its ``since``, the seq just
        before the first one replayed.
        """
        self.expire(now)
        replay = self._newest(count)
        since = replay[0].seq - 1 if replay else current_seq
        return replay, Recovery(complete=True, since=since, replayed=len(replay), seq=current_seq)

    def _newest(self, count: int | None) -> list[Outgoing]:
        entries = self._entries
        if count is None or count >= len(entries):
            return list(entries)
        return [entries[i] for i in range(len(entries) - count, len(entries))] if count else []
