"""The bench's pure parts: the latency histogram and the WebSocket frame parser."""

from __future__ import annotations

import struct

import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.bench import RawWebSocket, bucket_floor, bucket_of, percentile


@given(st.integers(min_value=0, max_value=10**12))
def test_histogram_bucket_floor_is_within_one_part_in_128(value: int) -> None:
    floor = bucket_floor(bucket_of(value))
    assert floor <= value
    assert value - floor <= value / 128


def test_histogram_buckets_are_ordered_like_values() -> None:
    values = [0, 1, 127, 128, 129, 255, 256, 1000, 10**6, 10**9]
    buckets = [bucket_of(v) for v in values]
    assert buckets == sorted(buckets)


def test_percentiles_of_a_known_distribution() -> None:
    counts: dict[int, int] = {}
    for value in range(1, 101):  # 1..100 µs, exact buckets
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    assert percentile(counts, 0.5) == 50
    assert percentile(counts, 0.99) == 99
    assert percentile(counts, 1.0) == 100
    assert percentile({}, 0.5) is None


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server frame (unmasked)."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, len(payload)) + payload
    if len(payload) < 65536:
        return struct.pack("!BBH", first, 126, len(payload)) + payload
    return struct.pack("!BBQ", first, 127, len(payload)) + payload


def parser(data: bytes = b"") -> RawWebSocket:
    left, _right = trio.testing.memory_stream_pair()
    return RawWebSocket(left, data)


def test_parser_splits_frames_of_every_length_encoding() -> None:
    big = b"x" * 70_000
    medium = b"y" * 300
    ws = parser(frame(1, b"small") + frame(1, medium) + frame(1, big))
    assert ws._parse() == ["small", medium.decode(), big.decode()]
    assert ws.buffer == b""


def test_parser_keeps_an_incomplete_frame_for_later() -> None:
    whole = frame(1, b"hello") + frame(1, b"world")
    ws = parser(whole[:9])
    assert ws._parse() == ["hello"]
    ws.buffer += whole[9:]
    assert ws._parse() == ["world"]


def test_parser_joins_fragments_answers_pings_and_stops_at_close() -> None:
    data = (
        frame(1, b"hel", fin=False)
        + frame(9, b"ping!")
        + frame(0, b"lo")
        + frame(8, struct.pack("!H", 4008) + b"slow")
        + frame(1, b"after close")
    )
    ws = parser(data)
    assert ws._parse() == ["hello"]
    assert ws.close_code == 4008
    pong, close = ws._control
    assert pong[0] == 0x8A  # FIN + pong
    assert pong[1] == 0x80 | 5  # masked, 5 bytes
    assert pong.endswith(b"ping!")
    assert close[0] == 0x88
