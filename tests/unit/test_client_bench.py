"""The bench's pure parts: the latency histogram, the WebSocket frame parser, and what its
subscribers count."""

from __future__ import annotations

import os
import queue
import signal
import struct
import subprocess
import sys

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.bench.loadgen import LoadgenError, result_from_mapping, spec_line
from trio_broadcast.bench.run import (
    FRAME_KEY_CHARS,
    RawWebSocket,
    WorkerResult,
    WorkerSpec,
    _process_tree,
    _Progress,
    _Subscriber,
    _wait_for,
    _Worker,
    process_cpu_seconds,
    process_rss_bytes,
)
from trio_broadcast.histogram import bucket_floor, bucket_of, count_at_most, percentile
from trio_broadcast.wire.frames import frame_header, upgrade_request
from trio_broadcast.wire.protocol import encode_batch, encode_message


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
    return frame_header(len(payload), opcode=opcode, fin=fin) + payload


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


# -- what subscribers count ------------------------------------------------------------------

RUN = "run1:"


def message(seq: int, sent_ns: int | None) -> str:
    text = f"{RUN}{sent_ns}:0:{seq}:xx" if sent_ns is not None else "someone else's"
    return encode_message(seq, text, "2026-11-25T10:00:00.000000+00:00", "0" * 12)


def batch(*events: str) -> str:
    return encode_batch(list(events))


def make_worker() -> _Worker:
    spec = WorkerSpec(
        index=0,
        url="ws://127.0.0.1:1/ws/events",
        run_id=RUN[:-1],
        subscribers=2,
        publishers=[],
        stalled=0,
        rate=None,
        window=1,
        size=10,
        total_publishers=0,
        duration=1.0,
        drain_timeout=1.0,
        connect_timeout=1.0,
    )
    worker = _Worker(spec, commands=None)  # type: ignore[arg-type]
    worker.positions = [-1, -1]
    return worker


def reader(slot: int) -> _Subscriber:
    subscriber = _Subscriber.__new__(_Subscriber)  # no socket: only the counting is tested
    subscriber.slot = slot
    subscriber.last = -1
    return subscriber


def test_a_frame_is_decoded_once_for_every_subscriber_that_receives_it() -> None:
    worker = make_worker()
    first, second = reader(0), reader(1)
    shared = batch(message(1, 1_000_000), message(2, None), message(3, 2_000_000))
    worker._consume(first, [shared], now=5_000_000)
    worker._consume(second, [shared.encode().decode()], now=6_000_000)  # equal, not the same
    assert len(worker.frame_cache) == 1
    result = worker.finish()
    assert (result.delivered, result.events, result.frames) == (4, 6, 2)
    assert (result.gaps, result.duplicates) == (0, 0)
    assert (first.last, second.last) == (3, 3)
    # Latency of every one of this run's messages, each with its own subscriber's clock.
    latencies_us = sorted(bucket_floor(b) for b, n in result.latency.items() for _ in range(n))
    assert latencies_us == [bucket_floor(bucket_of(us)) for us in (3000, 4000, 4000, 5000)]


def test_frames_alike_at_both_ends_are_not_taken_for_each_other() -> None:
    worker = make_worker()
    first, second = reader(0), reader(1)
    shared = batch(message(1, 10), message(2, 10), message(3, 10))
    other = batch(message(1, 10), message(7, 10), message(3, 10))  # same length and ends
    assert len(shared) == len(other) > 2 * FRAME_KEY_CHARS
    worker._consume(first, [shared], now=1000)
    worker._consume(second, [other], now=1000)
    result = worker.finish()
    assert (result.gaps, result.missing, result.duplicates) == (1, 5, 1)  # 1, 7 (2-6 missing), 3
    assert (first.last, second.last) == (3, 7)


def test_gaps_and_duplicates_are_found_message_by_message() -> None:
    worker = make_worker()
    subscriber = reader(0)
    worker._consume(subscriber, [message(1, 10)], now=1000)
    worker._consume(subscriber, [batch(message(3, 10), message(4, 10))], now=1000)  # 2 missing
    worker._consume(subscriber, [batch(message(4, 10), message(5, 10))], now=1000)  # 4 again
    worker._consume(subscriber, [batch(message(6, 10), message(6, 10))], now=1000)  # in-frame
    result = worker.finish()
    assert (result.gaps, result.missing, result.duplicates) == (1, 1, 2)
    assert subscriber.last == 6
    assert result.delivered == 5  # 1, 3, 4, 5, 6: duplicates are not deliveries


def test_cumulative_counts_are_exact_up_to_a_bound_and_within_a_bucket_above() -> None:
    counts: dict[int, int] = {}
    for value in (999, 1000, 1003, 1010, 5000):
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    assert count_at_most(counts, 1000) == 3  # 1003 shares 1000's bucket (1000-1003)
    assert count_at_most(counts, 998) == 1  # 999's bucket (996-999) straddles 998
    assert count_at_most(counts, 995) == 0
    assert count_at_most(counts, 10**6) == 5


# -- the C driver's adapter (loadgen.py): what goes to a loadgen process and what comes back --


def test_a_loadgen_gets_its_share_the_resolved_address_and_the_python_upgrade_request() -> None:
    spec = attrs.evolve(
        make_worker().spec, url="ws://localhost:8123/ws/events?batch=1", publishers=[1, 3]
    )
    line = spec_line(spec)
    assert line["address"] in ("127.0.0.1", "::1")
    assert line["port"] == 8123
    # The same request as the Python bench's, but for its random key.
    expected = upgrade_request("localhost:8123", "/ws/events?batch=1", key="KEY")
    sent = line["request"].encode()
    key_line = next(h for h in sent.split(b"\r\n") if h.startswith(b"Sec-WebSocket-Key: "))
    assert sent.replace(key_line, b"Sec-WebSocket-Key: KEY") == expected
    assert (line["run_id"], line["publishers"], line["rate"]) == ("run1", [1, 3], None)


def test_a_loadgen_refuses_tls() -> None:
    spec = attrs.evolve(make_worker().spec, url="wss://127.0.0.1:8123/ws/events")
    with pytest.raises(LoadgenError, match="ws:// only"):
        spec_line(spec)


def test_a_loadgen_result_line_becomes_the_result_a_python_worker_sends() -> None:
    line = {
        "connect_ms": [1.5, 2.25],
        "connect_wall_s": 0.01,
        "connect_failed": 1,
        "sent": 10,
        "acked": 9,
        "expected_messages": 9,
        "first_seq": 4,
        "last_seq": 12,
        "delivered": 18,
        "frames": 20,
        "events": 20,
        "gaps": 1,
        "missing": 2,
        "duplicates": 3,
        "evicted": 0,
        "stalled_evicted": 1,
        "stalled_dropped": 0,
        "closes": {"1006": 2},
        "errors": {"connect: OSError": 1},
        "latency": {"300": 17, "12": 1},
        "last_receive_ns": 123,
        "publish_lag_ms": 0.5,
        "cpu_s": 0.25,
    }
    result = result_from_mapping(2, line)
    assert result == WorkerResult(
        index=2,
        connect_ms=[1.5, 2.25],
        connect_wall_s=0.01,
        connect_failed=1,
        sent=10,
        acked=9,
        expected_messages=9,
        first_seq=4,
        last_seq=12,
        delivered=18,
        frames=20,
        events=20,
        gaps=1,
        missing=2,
        duplicates=3,
        stalled_evicted=1,
        closes={1006: 2},
        errors={"connect: OSError": 1},
        latency={300: 17, 12: 1},
        last_receive_ns=123,
        publish_lag_ms=0.5,
        cpu_s=0.25,
    )
    assert result_from_mapping(0, {**line, "first_seq": None, "last_seq": None}).last_seq is None


def test_a_worker_that_ended_early_stands_in_for_every_later_message() -> None:
    out: queue.Queue[tuple[str, int, object]] = queue.Queue()
    results: dict[int, WorkerResult] = {}
    progress = _Progress(quiet=True, workers=2)
    out.put(("connected", 0, {"connected": 3, "wall_s": 0.1}))
    out.put(("result", 1, WorkerResult(index=1, errors={"worker crashed: exit 1": 1})))
    connected = _wait_for(out, "connected", 2, progress, results, timeout=5)
    assert len(connected) == 2
    out.put(("published", 0, {"last_seq": 7, "complete_until": None, "acked": 7}))
    published = _wait_for(out, "published", 2, progress, results, timeout=5)  # no hang
    assert sorted(p["acked"] for p in published) == [0, 7]


def test_a_servers_cpu_and_memory_include_its_workers() -> None:
    """``serve --workers N`` runs its workers as children: the server's figures are the tree's."""
    sleep = "import time; time.sleep(30)"
    script = (  # says its child's pid once the child exists
        "import subprocess, sys; "
        f"child = subprocess.Popen([sys.executable, '-c', {sleep!r}]); "
        f"print(child.pid, flush=True); {sleep}"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _process_tree(parent.pid) == [parent.pid, child]
        parent_rss, child_rss = process_rss_bytes(parent.pid), process_rss_bytes(child)
        assert parent_rss is not None
        assert child_rss is not None
        assert parent_rss > child_rss > 0  # the parent's figure holds the child's
        cpu = process_cpu_seconds(parent.pid)
        assert cpu is not None
        assert cpu >= (process_cpu_seconds(child) or 0.0)
    finally:
        for pid in _process_tree(parent.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        parent.communicate()  # waits, and closes its stdout
