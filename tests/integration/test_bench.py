"""Short ``trio-broadcast bench`` runs: the figures must be sane and non-zero. Never a speed
threshold: the bench measures speed, tests only check that it measures."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import trio
from conftest import RunningServer
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from trio_broadcast.histogram import bucket_floor, bucket_of
from trio_broadcast.wire.protocol import encode_ack, encode_message, encode_welcome

TIMEOUT = 120  # seconds: worker processes and a server subprocess start up
COMMAND = [sys.executable, "-m", "trio_broadcast", "bench", "--quiet"]
COMPILER = shlex.split(os.environ.get("CC") or "cc")[0]  # what --driver c builds with
needs_cc = pytest.mark.skipif(shutil.which(COMPILER) is None, reason="--driver c needs cc")
DRIVERS = [pytest.param("python"), pytest.param("c", marks=needs_cc)]


async def bench(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*COMMAND, *args], capture_stdout=True, capture_stderr=True, check=False, env=env
    )


def check_sane(report: dict[str, Any], *, subscribers: int, publishers: int) -> None:
    """Every figure is there, consistent and non-zero where load ran."""
    delivery, publish, latency = report["delivery"], report["publish"], report["latency_ms"]
    assert publish["accepted"] > 0
    assert publish["unanswered"] == 0
    assert publish["intake_per_s"] > 0
    assert delivery["expected"] == publish["accepted"] * subscribers
    assert 0 < delivery["delivered"] <= delivery["expected"]
    assert 0 < delivery["ratio"] <= 1
    assert delivery["per_second"] > 0
    assert delivery["frames"] > 0
    assert delivery["messages_per_frame"] >= 1
    assert latency["samples"] >= delivery["delivered"]
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["integrity"] == {"gaps": 0, "missing": 0, "duplicates": 0}
    assert report["errors"] == {}
    connect = report["connect"]
    assert connect["connections"] == subscribers + publishers + report["config"]["stalled"]
    assert connect["failed"] == 0
    assert connect["total_s"] > 0
    assert 0 < connect["p50_ms"] <= connect["max_ms"]
    assert report["bench_cpu"]["cpu_s"] > 0


@pytest.mark.slow
async def test_spawned_bench_reports_sane_json() -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench(
            "--spawn",
            *("--subscribers", "6", "--publishers", "2", "--stalled", "1"),
            *("--rate", "100", "--duration", "2", "--workers", "2", "--json"),
        )
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        check_sane(report, subscribers=6, publishers=2)
        config = report["config"]
        assert (config["mode"], config["batch"], config["spawned"], config["workers"]) == (
            "rate",
            True,
            True,
            2,
        )
        assert report["publish"]["offered"] == 200
        assert report["evictions"]["stalled"] == 1
        server = report["server"]
        assert server["cpu_s"] > 0
        assert server["bytes_per_connection"] != 0
        assert server["status_delta"]["messages_in"] == report["publish"]["accepted"]


@pytest.mark.slow
async def test_bench_against_a_url_at_full_speed_without_batching(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench(
            server.ws_url,
            *("-s", "3", "-p", "1", "--duration", "1", "--workers", "1"),
            *("--window", "8", "--no-batch", "--json"),
        )
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        check_sane(report, subscribers=3, publishers=1)
        assert report["config"]["mode"] == "max"
        assert report["delivery"]["messages_per_frame"] == 1  # one message per frame
        server_report = report["server"]  # not spawned, no --server-pid: only /api/status
        assert "cpu_s" not in server_report
        assert server_report["status_delta"]["messages_in"] == report["publish"]["accepted"]


@pytest.mark.slow
async def test_bench_prints_a_readable_table(server: RunningServer) -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench(server.url, "-s", "2", "-p", "1", "-r", "20", "-d", "1", "-w", "1")
        assert done.returncode == 0, done.stderr.decode()
        table = done.stdout.decode()
        for label in ("deliveries/s", "delivered / expected", "latency p99", "bench CPU"):
            assert label in table


async def test_bench_usage_errors() -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench()
        assert done.returncode == 2
        assert b"URL or --spawn" in done.stderr


async def test_bench_exits_3_when_nothing_can_connect() -> None:
    with trio.fail_after(TIMEOUT):
        probe = trio.socket.socket()
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        done = await bench(f"ws://127.0.0.1:{port}", "-s", "1", "-p", "0", "-d", "0.1", "-w", "1")
        assert done.returncode == 3
        assert b"no connection" in done.stderr


# -- both drivers: the same load, the same counts ----------------------------------------------


def check_exact(report: dict[str, Any], *, subscribers: int, offered: int) -> None:
    """A rate-mode run that went through: every offered message accepted and delivered once to
    every subscriber, with a latency sample each, in the histogram's own buckets."""
    publish, delivery, latency = report["publish"], report["delivery"], report["latency_ms"]
    assert publish["offered"] == publish["sent"] == publish["accepted"] == offered
    assert delivery["expected"] == delivery["delivered"] == offered * subscribers
    assert latency["samples"] == delivery["delivered"]
    for name in ("p50", "p90", "p99", "max"):  # bucket floors: µs values the buckets start at
        value_us = round(latency[name] * 1000)
        assert bucket_floor(bucket_of(value_us)) == value_us


@pytest.mark.slow
@pytest.mark.parametrize("driver", DRIVERS)
async def test_both_drivers_count_every_delivery_of_a_spawned_server(driver: str) -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench(
            "--spawn",
            *("--driver", driver, "-s", "20", "-p", "2", "-q", "1", "-w", "1"),
            *("--rate", "100", "--duration", "1", "--no-batch", "--json"),
        )
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        check_sane(report, subscribers=20, publishers=2)
        check_exact(report, subscribers=20, offered=100)
        assert report["config"]["driver"] == driver
        assert report["delivery"]["messages_per_frame"] == 1
        assert report["unexpected_closes"] == {}
        assert report["server"]["status_delta"]["deliveries"] >= report["delivery"]["delivered"]
        stalled = report["evictions"]
        assert stalled["stalled_evicted"] + stalled["stalled_dropped"] <= stalled["stalled"] == 1


@pytest.mark.slow
@needs_cc
async def test_c_driver_batched_with_a_stalled_subscriber_evicted(
    server_factory: Callable[..., Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        # 300 messages of 30,000 characters (9 MB) to a subscriber that never reads: more than
        # its socket buffers (at most 4 MB sent, ~128 KB received while it does not read) and an
        # eight-message outbox hold, so the server closes it with 4008. At 300 msg/s, far from
        # full speed, the healthy ones never fall eight messages behind.
        async with server_factory(outbox_messages=8) as server:
            done = await bench(
                server.ws_url,
                *("--driver", "c", "-s", "20", "-p", "2", "-q", "1", "-w", "1"),
                *("--size", "30000", "--rate", "300", "--duration", "1", "--json"),
            )
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        check_sane(report, subscribers=20, publishers=2)
        check_exact(report, subscribers=20, offered=300)
        assert report["config"]["batch"]
        assert report["delivery"]["messages_per_frame"] >= 1
        assert report["evictions"]["subscribers"] == 0
        assert report["unexpected_closes"] == {}
        assert report["evictions"]["stalled_evicted"] == 1


class MisnumberingServer:
    """A broadcast server with two faults a subscriber must notice: the 3rd broadcast's seq is
    one too high (a gap: one seq missing), and the 6th broadcast reaches every subscriber
    twice (a duplicate). Its acks are right: every publish is accepted."""

    def __init__(self) -> None:
        self.clients: dict[str, WebSocketConnection] = {}
        self.seq = 0  # the newest seq given out
        self.broadcasts = 0

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        client_id = f"{len(self.clients):012x}"
        self.clients[client_id] = ws
        welcome = encode_welcome(
            client_id=client_id,
            seq=self.seq,
            epoch="e1",
            connections=len(self.clients),
            server="misnumbering",
            batch=False,
            limits={},
        )
        try:
            await ws.send_message(welcome)
            while True:
                publish = json.loads(await ws.get_message())
                self.broadcasts += 1
                self.seq += 2 if self.broadcasts == 3 else 1
                timestamp = "2026-11-25T10:00:00.000000+00:00"
                frame = encode_message(self.seq, publish["message"], timestamp, client_id)
                copies = 2 if self.broadcasts == 6 else 1
                for other in list(self.clients.values()):
                    if other is not ws:
                        for _ in range(copies):
                            await other.send_message(frame)
                await ws.send_message(encode_ack(self.seq, timestamp, None))
        except ConnectionClosed:
            pass
        finally:
            del self.clients[client_id]


@pytest.mark.slow
@pytest.mark.parametrize("driver", DRIVERS)
async def test_both_drivers_report_a_skipped_seq_and_a_repeated_message(driver: str) -> None:
    fake = MisnumberingServer()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(serve_websocket, fake.handle, "127.0.0.1", 0, None)
            done = await bench(
                f"ws://127.0.0.1:{listening.port}/ws/events",
                *("--driver", driver, "-s", "3", "-p", "1", "-w", "1", "--no-batch"),
                *("--rate", "20", "--duration", "1", "--json"),
            )
            nursery.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert fake.broadcasts == 20
    # Each of the 3 subscribers saw one gap of one seq and one duplicate; the duplicate is not
    # a delivery, and the skipped seq was never a message, so every message arrived once.
    assert report["integrity"] == {"gaps": 3, "missing": 3, "duplicates": 3}
    check_exact(report, subscribers=3, offered=20)


@pytest.mark.slow
@needs_cc
async def test_c_driver_refuses_wss_and_says_so() -> None:
    with trio.fail_after(TIMEOUT):
        done = await bench("wss://127.0.0.1:1/ws/events", "--driver", "c", "-d", "0.1")
    assert done.returncode == 2
    assert b"ws:// only" in done.stderr


async def test_c_driver_without_a_compiler_fails_in_one_line() -> None:
    with trio.fail_after(TIMEOUT):
        env = {**os.environ, "CC": "no-such-compiler-here"}
        done = await bench("--spawn", "--driver", "c", "-d", "0.1", env=env)
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        "trio-broadcast bench: --driver c needs a C compiler: 'no-such-compiler-here' not found "
        "(install gcc or clang, or set CC; or use --driver python)"
    ]
