"""The client's protocol bookkeeping, without sockets: URLs, frame decoding, resume, gaps,
duplicates, publish outcomes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.client.state import (
    Ack,
    AckFrame,
    ClientState,
    Connected,
    ErrorFrame,
    Gap,
    InvalidURLError,
    Message,
    MessageFrame,
    MessageTooLargeError,
    Output,
    PublishOutcomeUnknownError,
    PublishRejectedError,
    PublishStatus,
    RateLimitedError,
    Ready,
    ReconnectNow,
    ServerProtocolError,
    Settled,
    connect_url,
    decode_frame,
    websocket_url,
)

TS = "2026-11-25T10:00:00.123456+00:00"


def welcome(seq: int = 0, epoch: str = "e1", client_id: str = "me1", **limits: Any) -> str:
    return json.dumps(
        {
            "type": "welcome",
            "client_id": client_id,
            "seq": seq,
            "epoch": epoch,
            "connections": 1,
            "server": "trio-broadcast/test",
            "batch": True,
            "limits": {"max_message_bytes": 65536, **limits},
        }
    )


def message(seq: int, text: str = "hi", sender: str = "other") -> dict[str, Any]:
    return {"type": "message", "seq": seq, "message": text, "timestamp": TS, "sender": sender}


def ack(seq: int, id_: str | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "ack", "seq": seq, "timestamp": TS}
    if id_ is not None:
        frame["id"] = id_
    return frame


def error(code: str = "rate_limited", id_: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": "slow down"}
    if id_ is not None:
        frame["id"] = id_
    return frame


def recovered(complete: bool, since: int, seq: int, **extra: Any) -> dict[str, Any]:
    return {"type": "recovered", "complete": complete, "since": since, "seq": seq, **extra}


def feed(state: ClientState, *frames: dict[str, Any] | str) -> list[Output]:
    out: list[Output] = []
    for frame in frames:
        out += state.receive(frame if isinstance(frame, str) else json.dumps(frame))
    return out


def live(seq: int = 0, epoch: str = "e1") -> ClientState:
    state = ClientState(id_prefix="p-")
    state.connection_opened()
    feed(state, welcome(seq, epoch))
    return state


def kinds(out: list[Output]) -> list[str]:
    return [type(o).__name__ for o in out]


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        ("ws://h:1/ws/events", "ws://h:1/ws/events"),
        ("http://h:1", "ws://h:1/ws/events"),
        ("https://h/", "wss://h/ws/events"),
        ("WSS://h:9/other?x=1", "wss://h:9/other?x=1"),
    ],
)
def test_websocket_url_normalises_scheme_and_default_path(given_url: str, expected: str) -> None:
    assert websocket_url(given_url) == expected


@pytest.mark.parametrize("bad", ["", "ftp://h/x", "h:8000", "ws://", "ws://h:notaport/"])
def test_websocket_url_refuses_what_cannot_be_an_endpoint(bad: str) -> None:
    with pytest.raises(InvalidURLError):
        websocket_url(bad)


def test_connect_url_adds_resume_and_batch_parameters_once() -> None:
    base = "ws://h:1/ws/events?token=a&since=3"
    assert connect_url(base, since=None, epoch=None, batch=False) == "ws://h:1/ws/events?token=a"
    url = connect_url(base, since=41, epoch="k2", batch=True)
    assert url == "ws://h:1/ws/events?token=a&since=41&epoch=k2&batch=1"


# -- decoding --------------------------------------------------------------------------------


def test_batch_frame_is_flattened_in_order_and_unknown_types_skipped() -> None:
    text = json.dumps(
        {
            "type": "batch",
            "events": [message(1), {"type": "future_thing", "x": 1}, ack(2, "a"), error()],
        }
    )
    frames = decode_frame(text)
    assert frames == [
        MessageFrame(seq=1, message="hi", timestamp=TS, sender="other"),
        AckFrame(seq=2, timestamp=TS, id="a"),
        ErrorFrame(code="rate_limited", detail="slow down"),
    ]


def test_unknown_fields_are_ignored() -> None:
    frame = {**message(5), "shiny_new_field": [1, 2]}
    assert decode_frame(json.dumps(frame)) == [
        MessageFrame(seq=5, message="hi", timestamp=TS, sender="other")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "message", "seq": "7", "message": "x", "timestamp": "t", "sender": "s"}',
        '{"type": "message", "seq": true, "message": "x", "timestamp": "t", "sender": "s"}',
        '{"type": "batch", "events": {}}',
    ],
)
def test_malformed_server_frames_raise_server_protocol_error(text: str) -> None:
    with pytest.raises(ServerProtocolError):
        decode_frame(text)


# -- the stream of events --------------------------------------------------------------------


def test_fresh_connection_reports_connected_then_ready() -> None:
    state = ClientState()
    assert state.connect_url("ws://h/ws/events") == "ws://h/ws/events?batch=1"
    state.connection_opened()
    out = feed(state, welcome(seq=41))
    assert kinds(out) == ["Connected", "Ready"]
    connected = out[0]
    assert isinstance(connected, Connected)
    assert (connected.seq, connected.epoch, connected.resumed) == (41, "e1", False)
    assert state.last_seq == 41
    assert state.ready


def test_frames_before_welcome_are_a_protocol_error() -> None:
    state = ClientState()
    state.connection_opened()
    with pytest.raises(ServerProtocolError):
        feed(state, message(1))


def test_messages_in_order_and_duplicates_dropped() -> None:
    state = live(seq=10)
    out = feed(state, message(11, "a"), message(11, "a"), message(10), message(12, "b"))
    assert [(m.seq, m.text) for m in out if isinstance(m, Message)] == [(11, "a"), (12, "b")]
    assert state.statistics().duplicates == 2


def test_jump_in_live_stream_is_an_explicit_gap_before_the_message() -> None:
    state = live(seq=10)
    out = feed(state, message(11), message(15))
    assert kinds(out) == ["Message", "Gap", "Message"]
    gap = out[1]
    assert gap == Gap(
        reason="sequence_jump", previous_epoch="e1", since=11, epoch="e1", until=14, count=3
    )


def test_resume_replays_then_goes_live_and_asks_with_since_and_epoch() -> None:
    state = live(seq=10)
    feed(state, message(11))
    state.connection_lost()
    assert state.connect_url("ws://h/ws/events") == "ws://h/ws/events?since=11&epoch=e1&batch=1"
    state.connection_opened()
    out = feed(state, welcome(14, client_id="me2"))
    assert kinds(out) == ["Connected"]  # not ready to publish until the replay is over
    assert isinstance(out[0], Connected)
    assert out[0].resumed
    assert not state.ready
    batch = {"type": "batch", "events": [message(12), message(13), message(14)]}
    out = feed(state, batch, recovered(True, 11, 14, replayed=3), message(15))
    messages = [o for o in out if isinstance(o, Message)]
    assert [(m.seq, m.replayed) for m in messages] == [
        (12, True),
        (13, True),
        (14, True),
        (15, False),
    ]
    assert kinds(out)[3] == "Ready"
    assert state.statistics().gaps == 0


def test_history_expired_gap_comes_before_the_first_replayed_message() -> None:
    state = live(seq=3)
    state.connection_lost()
    state.connection_opened()
    feed(state, welcome(42))
    out = feed(
        state,
        message(40),
        message(41),
        message(42),
        recovered(False, 3, 42, reason="history_expired", first_seq=40, replayed=3),
    )
    assert kinds(out) == ["Gap", "Message", "Message", "Message", "Ready"]
    assert out[0] == Gap(
        reason="history_expired", previous_epoch="e1", since=3, epoch="e1", until=39, count=36
    )


def test_history_expired_with_nothing_replayed_reports_the_gap_at_recovered() -> None:
    state = live(seq=3)
    state.connection_lost()
    state.connection_opened()
    feed(state, welcome(9))
    out = feed(state, recovered(False, 3, 9, reason="history_expired", first_seq=10, replayed=0))
    assert kinds(out) == ["Gap", "Ready"]
    assert isinstance(out[0], Gap)
    assert (out[0].since, out[0].until, out[0].count) == (3, 9, 6)
    assert kinds(feed(state, message(10))) == ["Message"]


def test_server_restart_with_nothing_kept_is_a_gap_of_unknown_size_then_live() -> None:
    state = live(seq=7, epoch="old")
    state.connection_lost()
    state.connection_opened()
    assert kinds(feed(state, welcome(2, epoch="new"))) == ["Connected"]
    out = feed(state, recovered(False, 7, 2, reason="epoch_mismatch", replayed=0), message(3))
    assert kinds(out) == ["Gap", "Ready", "Message"]
    assert out[0] == Gap(
        reason="epoch_mismatch", previous_epoch="old", since=7, epoch="new", until=2, count=None
    )
    assert isinstance(out[2], Message)
    assert out[2].epoch == "new"
    assert (state.epoch, state.last_seq) == ("new", 3)


def test_server_restart_replays_what_the_new_epoch_kept_after_the_gap() -> None:
    state = live(seq=7, epoch="old")
    state.connection_lost()
    state.connection_opened()
    feed(state, welcome(3, epoch="new"))
    out = feed(
        state,
        message(2, "kept"),
        message(3, "newest"),
        recovered(False, 7, 3, reason="epoch_mismatch", first_seq=2, replayed=2),
    )
    assert kinds(out) == ["Gap", "Message", "Message", "Ready"]
    assert out[0] == Gap(
        reason="epoch_mismatch", previous_epoch="old", since=7, epoch="new", until=1, count=None
    )
    assert [(m.seq, m.text, m.epoch, m.replayed) for m in out[1:3] if isinstance(m, Message)] == [
        (2, "kept", "new", True),
        (3, "newest", "new", True),
    ]
    assert (state.epoch, state.last_seq) == ("new", 3)


def test_since_ahead_of_the_server_in_the_same_epoch_resets_the_position() -> None:
    state = ClientState(since=50, epoch="e1")
    state.connection_opened()
    feed(state, welcome(20))
    out = feed(state, recovered(False, 50, 20, reason="epoch_mismatch", replayed=0), message(21))
    assert kinds(out) == ["Gap", "Ready", "Message"]
    assert isinstance(out[0], Gap)
    assert out[0].count is None


def test_since_without_epoch_learns_the_epoch_then_dials_again() -> None:
    state = ClientState(since=5)
    assert "since" not in state.connect_url("ws://h/ws/events")
    state.connection_opened()
    out = feed(state, welcome(9, epoch="cur"))
    assert out == [ReconnectNow()]
    state.connection_lost()
    assert "since=5&epoch=cur" in state.connect_url("ws://h/ws/events")


def test_since_without_epoch_and_nothing_missed_just_goes_live() -> None:
    state = ClientState(since=9)
    state.connection_opened()
    assert kinds(feed(state, welcome(9, epoch="cur"))) == ["Connected", "Ready"]


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=60))
def test_whatever_the_server_sends_delivery_is_in_order_once_or_a_gap(seqs: list[int]) -> None:
    state = live(seq=0)
    out = feed(state, *(message(seq) for seq in seqs))
    position = 0
    for item in out:
        if isinstance(item, Gap):
            assert item.since == position
            assert item.until > position
            position = item.until
        elif isinstance(item, Message):
            assert item.seq == position + 1
            position = item.seq
    assert position == max([0, *seqs])


# -- publishing ------------------------------------------------------------------------------


def test_publish_is_settled_by_its_ack_which_also_advances_the_position() -> None:
    state = live(seq=4)
    entry = state.add_publish("hello")
    assert json.loads(entry.frame) == {"message": "hello", "id": "p-1"}
    state.mark_sent(entry)
    out = feed(state, ack(5, "p-1"))
    assert out == [Settled("p-1")]
    assert isinstance(entry.outcome, Ack)
    assert (entry.outcome.seq, entry.outcome.id) == (5, "p-1")
    assert state.last_seq == 5


def test_error_overtaking_earlier_acks_is_matched_to_the_right_publish() -> None:
    # The server refuses frame 3 at once, while acks of 1 and 2 still wait for the broadcaster.
    state = live(seq=0)
    entries = [state.add_publish(f"m{i}") for i in range(1, 4)]
    for entry in entries:
        state.mark_sent(entry)
    out = feed(state, error("rate_limited"))
    assert out == []  # ambiguous until the acks arrive
    feed(state, ack(1, "p-1"), ack(2, "p-2"))
    assert isinstance(entries[0].outcome, Ack)
    assert isinstance(entries[1].outcome, Ack)
    assert isinstance(entries[2].outcome, RateLimitedError)


def test_a_refusal_that_names_its_publish_settles_that_one_at_once() -> None:
    state = live(seq=0)
    entries = [state.add_publish(f"m{i}") for i in range(1, 4)]
    for entry in entries:
        state.mark_sent(entry)
    out = feed(state, error("rate_limited", "p-2"))  # overtakes the acks of p-1 and p-3
    assert out == [Settled("p-2")]
    assert isinstance(entries[1].outcome, RateLimitedError)
    feed(state, ack(1, "p-1"), ack(2, "p-3"))
    assert isinstance(entries[0].outcome, Ack)
    assert isinstance(entries[2].outcome, Ack)


def test_error_before_a_later_ack_settles_the_earlier_publish() -> None:
    state = live(seq=0)
    first, second = state.add_publish("a"), state.add_publish("b")
    state.mark_sent(first)
    state.mark_sent(second)
    feed(state, error("invalid_message"), ack(1, "p-2"))
    assert isinstance(first.outcome, PublishRejectedError)
    assert not isinstance(first.outcome, RateLimitedError)
    assert isinstance(second.outcome, Ack)


def test_abandoned_publish_absorbs_its_ack() -> None:
    state = live(seq=0)
    entry = state.add_publish("x")
    state.mark_sent(entry)
    state.discard(entry)
    assert feed(state, ack(1, "p-1")) == []
    assert state.pending() == []


def test_publish_over_max_message_bytes_is_refused_before_sending() -> None:
    state = ClientState()
    state.connection_opened()
    feed(state, welcome(max_message_bytes=100))
    with pytest.raises(MessageTooLargeError):
        state.add_publish("x" * 100)
    assert state.add_publish("x" * 50).status is PublishStatus.UNSENT


def test_publish_ids_are_checked() -> None:
    state = live()
    state.add_publish("a", "mine")
    with pytest.raises(ValueError, match="already pending"):
        state.add_publish("b", "mine")
    with pytest.raises(ValueError, match="64"):
        state.add_publish("c", "x" * 65)


def _lose_in_flight(state: ClientState, *texts: str) -> list[Any]:
    entries = [state.add_publish(text) for text in texts]
    for entry in entries:
        state.mark_sent(entry)
    state.connection_lost()
    assert all(e.status is PublishStatus.UNCERTAIN for e in entries)
    state.connection_opened()
    return entries


def test_publish_lost_with_the_connection_is_acked_from_the_replay() -> None:
    state = live(seq=0)
    replayed, missing = _lose_in_flight(state, "one", "two")
    feed(state, welcome(1, client_id="me2"))
    out = feed(state, message(1, "one", sender="me1"), recovered(True, 0, 1, replayed=1))
    assert Settled(replayed.id) in out
    assert not [o for o in out if isinstance(o, Message)]  # our own message is not an event
    assert isinstance(replayed.outcome, Ack)
    assert replayed.outcome.recovered
    assert missing.status is PublishStatus.UNSENT  # proven not broadcast: send it again


def test_publish_lost_with_the_connection_is_unknown_when_the_replay_is_incomplete() -> None:
    state = live(seq=0, epoch="old")
    (entry,) = _lose_in_flight(state, "one")
    feed(state, welcome(0, epoch="new"))
    out = feed(state, recovered(False, 0, 0, reason="epoch_mismatch", replayed=0))
    assert Settled(entry.id) in out
    assert isinstance(entry.outcome, PublishOutcomeUnknownError)


def test_statistics_count_what_happened() -> None:
    state = live(seq=0)
    feed(state, message(1), message(1), message(3))
    stats = state.statistics()
    assert (stats.messages, stats.duplicates, stats.gaps, stats.lost) == (2, 1, 1, 1)
    assert stats.connections == 1
    assert isinstance(feed(state, message(4))[0], Message)
    assert Ready() not in feed(state, message(5))


def test_a_1009_close_fails_the_publishes_in_flight_instead_of_resending_them() -> None:
    state = live(seq=0)
    entry = state.add_publish("big")
    state.mark_sent(entry)
    out = state.connection_lost(1009)
    assert out == [Settled(entry.id)]
    assert isinstance(entry.outcome, MessageTooLargeError)


def test_the_size_limit_is_remembered_while_disconnected() -> None:
    state = ClientState()
    state.connection_opened()
    feed(state, welcome(max_message_bytes=64))
    state.connection_lost()
    with pytest.raises(MessageTooLargeError):
        state.add_publish("x" * 64)


def test_events_before_a_bad_frame_in_a_batch_still_come_out() -> None:
    state = live(seq=0)
    batch = json.dumps({"type": "batch", "events": [message(1), json.loads(welcome())]})
    with pytest.raises(ServerProtocolError) as raised:
        state.receive(batch)
    assert [o.seq for o in raised.value.outputs if isinstance(o, Message)] == [1]
    assert state.last_seq == 1
