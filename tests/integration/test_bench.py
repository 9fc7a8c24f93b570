"""Short ``trio-broadcast bench`` runs: the figures must be sane and non-zero. Never a speed
threshold: the bench measures speed, tests only check that it measures."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import trio
from conftest import RunningServer

TIMEOUT = 120  # seconds: worker processes and a server subprocess start up
COMMAND = [sys.executable, "-m", "trio_broadcast", "bench", "--quiet"]


async def bench(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*COMMAND, *args], capture_stdout=True, capture_stderr=True, check=False
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
