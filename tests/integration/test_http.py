"""HTTP routes of a real server: health, status, metrics, the UI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import RunningServer
from support import connect, publish, receive_type


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def test_health_reports_the_live_connection_count(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/health")).json()["connections"] == 0
    async with connect(server.ws_url) as ws:
        await receive_type(ws, "welcome")
        response = await http.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy"
        assert body["connections"] == 1
    await server.wait_for_connections(0)
    assert (await http.get("/health")).json()["connections"] == 0


async def test_status_counts_messages_in_and_out(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(server.ws_url) as sender, connect(server.ws_url) as listener:
        await receive_type(sender, "welcome")
        await receive_type(listener, "welcome")
        await publish(sender, "hello")
        await receive_type(sender, "ack")
        await receive_type(listener, "message")
        await sender.send_message("not json")
        await receive_type(sender, "error")
        status = (await http.get("/api/status")).json()
    assert status["version"] == "0.1.0"
    assert status["uptime"] >= 0
    assert status["connections"] == 2
    assert status["messages_in"] == 1
    assert status["deliveries"] == 1
    # welcome x2, message, ack, error: every event written so far
    assert status["messages_out"] == 5
    assert status["errors"] == {"invalid_json": 1}
    assert status["evictions"] == {}
    assert status["epoch"] == server.app.hub.epoch
    assert (status["backplane"], status["cluster_connections"], status["node"]) == (
        "none",
        None,
        None,
    )


async def test_metrics_exposes_prometheus_text(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(server.ws_url) as sender, connect(server.ws_url) as listener:
        await receive_type(sender, "welcome")
        await receive_type(listener, "welcome")
        await publish(sender, "hello")
        await receive_type(listener, "message")
        await receive_type(sender, "ack")
        response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert "trio_broadcast_connections 2.0" in lines
    assert "trio_broadcast_messages_received_total 1.0" in lines
    assert "trio_broadcast_deliveries_total 1.0" in lines
    assert any(line.startswith("trio_broadcast_broadcast_latency_seconds_bucket") for line in lines)
    assert 'trio_broadcast_outbox_depth{stat="max"} 0.0' in lines


async def test_root_serves_a_page(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.status_code == 200
    assert "trio-broadcast" in response.text
    assert response.headers["cache-control"] == "no-cache"


async def test_unknown_path_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/no/such/file.js")).status_code == 404
