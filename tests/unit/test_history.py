"""The resume history: what a reconnecting client gets back, and how complete it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.server.history import History
from trio_broadcast.wire.protocol import Outgoing, Recovery


def entry(seq: int, created: float = 0.0) -> Outgoing:
    return Outgoing.of(f'{{"type":"message","seq":{seq}}}', created=created, seq=seq)


def filled(size: int, ttl: float | None, count: int, *, every: float = 0.0) -> History:
    """A history that saw broadcasts 1..count, one each ``every`` seconds from time 0."""
    history = History(size, ttl)
    for seq in range(1, count + 1):
        history.append(entry(seq, created=(seq - 1) * every))
    return history


def seqs(replay: list[Outgoing]) -> list[int]:
    return [item.seq for item in replay]


def test_resume_replays_everything_after_since_in_order() -> None:
    history = filled(10, None, 5)
    replay, recovery = history.recover(2, epoch_matches=True, current_seq=5, now=0.0)
    assert seqs(replay) == [3, 4, 5]
    assert recovery == Recovery(complete=True, since=2, replayed=3, seq=5)


def test_resume_replays_the_stored_entries_themselves() -> None:
    history = History(10, None)
    entries = [entry(seq) for seq in (1, 2, 3)]
    for item in entries:
        history.append(item)
    replay, _ = history.recover(0, epoch_matches=True, current_seq=3, now=0.0)
    assert all(got is stored for got, stored in zip(replay, entries, strict=True))


def test_resume_from_zero_replays_the_whole_history() -> None:
    replay, recovery = filled(10, None, 4).recover(0, True, 4, 0.0)
    assert seqs(replay) == [1, 2, 3, 4]
    assert recovery.complete


def test_resume_with_nothing_missed_is_complete_and_empty() -> None:
    replay, recovery = filled(10, None, 5).recover(5, True, 5, 0.0)
    assert replay == []
    assert recovery == Recovery(complete=True, since=5, replayed=0, seq=5)


def test_resume_at_the_oldest_kept_seq_is_still_complete() -> None:
    history = filled(3, None, 5)  # keeps 3, 4, 5
    replay, recovery = history.recover(2, True, 5, 0.0)
    assert seqs(replay) == [3, 4, 5]
    assert recovery.complete


def test_history_pushed_out_by_count_reports_history_expired() -> None:
    history = filled(3, None, 5)  # 1 and 2 were pushed out
    assert len(history) == 3
    replay, recovery = history.recover(0, True, 5, 0.0)
    assert seqs(replay) == [3, 4, 5]
    assert recovery == Recovery(
        complete=False,
        reason="history_expired",
        since=0,
        first_seq=3,
        replayed=3,
        seq=5,
    )


def test_history_older_than_ttl_reports_history_expired() -> None:
    history = filled(100, ttl=10.0, count=5, every=5.0)  # created at 0, 5, 10, 15, 20
    replay, recovery = history.recover(1, True, 5, now=17.0)  # 0 and 5 are over 10 s old
    assert seqs(replay) == [3, 4, 5]
    assert recovery == Recovery(
        complete=False,
        reason="history_expired",
        since=1,
        first_seq=3,
        replayed=3,
        seq=5,
    )


def test_history_within_ttl_is_complete() -> None:
    history = filled(100, ttl=10.0, count=5, every=5.0)
    replay, recovery = history.recover(3, True, 5, now=22.0)
    assert seqs(replay) == [4, 5]
    assert recovery.complete


def test_history_expired_entirely_by_ttl_replays_nothing() -> None:
    history = filled(100, ttl=10.0, count=3, every=1.0)
    replay, recovery = history.recover(1, True, 3, now=100.0)
    assert replay == []
    assert recovery == Recovery(
        complete=False,
        reason="history_expired",
        since=1,
        first_seq=4,
        replayed=0,
        seq=3,
    )
    assert len(history) == 0


def test_expire_drops_only_entries_older_than_ttl() -> None:
    history = filled(100, ttl=10.0, count=5, every=5.0)
    history.expire(now=17.0)
    assert [item.seq for item in history] == [3, 4, 5]  # created 10, 15, 20


def test_expire_without_ttl_keeps_everything() -> None:
    history = filled(100, ttl=None, count=5, every=5.0)
    history.expire(now=1e9)
    assert len(history) == 5


def test_other_epoch_replays_this_epochs_history_as_an_epoch_mismatch() -> None:
    replay, recovery = filled(3, None, 5).recover(2, epoch_matches=False, current_seq=5, now=0.0)
    assert seqs(replay) == [3, 4, 5]
    assert recovery == Recovery(
        complete=False, reason="epoch_mismatch", since=2, first_seq=3, replayed=3, seq=5
    )


def test_other_epoch_with_last_replays_only_the_newest() -> None:
    replay, recovery = filled(10, None, 5).recover(9, False, 5, 0.0, last=2)
    assert seqs(replay) == [4, 5]
    assert (recovery.first_seq, recovery.replayed, recovery.complete) == (4, 2, False)


def test_other_epoch_with_an_empty_history_replays_nothing() -> None:
    replay, recovery = filled(10, None, 0).recover(7, False, 0, 0.0)
    assert replay == []
    assert recovery == Recovery(complete=False, reason="epoch_mismatch", since=7, replayed=0, seq=0)


def test_since_beyond_the_current_seq_is_an_epoch_mismatch() -> None:
    replay, recovery = filled(10, None, 5).recover(6, True, 5, 0.0)
    assert seqs(replay) == [1, 2, 3, 4, 5]
    assert recovery.reason == "epoch_mismatch"
    assert not recovery.complete


def test_negative_since_is_an_epoch_mismatch() -> None:
    _, recovery = filled(10, None, 5).recover(-1, True, 5, 0.0)
    assert recovery.reason == "epoch_mismatch"


@pytest.mark.parametrize(
    ("last", "expected", "since"),
    [(2, [4, 5], 3), (0, [], 5), (5, [1, 2, 3, 4, 5], 0), (50, [1, 2, 3, 4, 5], 0)],
)
def test_latest_replays_the_newest_broadcasts_as_a_complete_recovery(
    last: int, expected: list[int], since: int
) -> None:
    replay, recovery = filled(10, None, 5).latest(last, current_seq=5, now=0.0)
    assert seqs(replay) == expected
    assert recovery == Recovery(complete=True, since=since, replayed=len(expected), seq=5)


def test_latest_leaves_out_what_expired() -> None:
    replay, recovery = filled(10, 10.0, 5, every=5.0).latest(5, current_seq=5, now=22.0)
    assert seqs(replay) == [4, 5]
    assert recovery.since == 3


def test_size_zero_keeps_nothing() -> None:
    history = filled(0, None, 5)
    assert len(history) == 0
    assert list(history) == []


def test_size_zero_resume_is_history_expired_unless_nothing_was_missed() -> None:
    history = filled(0, None, 5)
    replay, recovery = history.recover(2, True, 5, 0.0)
    assert replay == []
    assert recovery == Recovery(
        complete=False,
        reason="history_expired",
        since=2,
        first_seq=6,
        replayed=0,
        seq=5,
    )
    replay, recovery = history.recover(5, True, 5, 0.0)
    assert replay == []
    assert recovery.complete


@given(
    size=st.integers(min_value=0, max_value=8),
    count=st.integers(min_value=0, max_value=20),
    data=st.data(),
)
def test_resume_replays_exactly_what_is_kept_after_since(
    size: int, count: int, data: st.DataObject
) -> None:
    since = data.draw(st.integers(min_value=0, max_value=count))
    history = filled(size, None, count)
    replay, recovery = history.recover(since, True, count, 0.0)
    first_kept = count - min(size, count) + 1
    assert seqs(replay) == list(range(max(since + 1, first_kept), count + 1))
    assert recovery.replayed == len(replay)
    assert recovery.seq == count
    assert recovery.complete == (since + 1 >= first_kept)
    if not recovery.complete:
        assert recovery.reason == "history_expired"
        assert recovery.first_seq == first_kept
