"""/metrics parses as Prometheus text, and the same registry as OpenMetrics."""

from __future__ import annotations

import httpx
from conftest import RunningServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus
from support import connect, publish, receive_type


async def _traffic(server: RunningServer) -> None:
    """Two clients, one broadcast, one refused frame: every family has a sample."""
    async with connect(server.ws_url) as sender, connect(server.ws_url) as listener:
        await receive_type(sender, "welcome")
        await receive_type(listener, "welcome")
        await publish(sender, "hello")
        await receive_type(listener, "message")
        await receive_type(sender, "ack")
        await sender.send_message("not json")
        await receive_type(sender, "error")


async def test_metrics_text_format_parses_with_connection_gauge_and_counter(
    server: RunningServer,
) -> None:
    await _traffic(server)
    await server.wait_for_connections(0)
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    families = {family.name: family for family in parse_prometheus(text)}
    assert families["trio_broadcast_connections"].type == "gauge"
    assert families["trio_broadcast_connections"].samples[0].value == 0
    accepted = families["trio_broadcast_connections_accepted"]
    assert accepted.type == "counter"
    assert accepted.samples[0].name == "trio_broadcast_connections_accepted_total"
    assert accepted.samples[0].value == 2


async def test_metrics_in_openmetrics_when_the_scraper_asks_for_it(server: RunningServer) -> None:
    await _traffic(server)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/metrics", headers={"Accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    text = response.text
    assert text.endswith("# EOF\n")
    # The parser raises on a family name used twice (a gauge beside a counter's base name).
    parsed = parse_openmetrics(text)  # type: ignore[no-untyped-call]
    families = {family.name: family for family in parsed}
    assert families["trio_broadcast_connections"].type == "gauge"
    assert families["trio_broadcast_connections_accepted"].type == "counter"
    assert families["trio_broadcast_client_errors"].samples[0].labels == {"code": "invalid_json"}
    assert families["trio_broadcast_broadcast_latency_seconds"].type == "histogram"
