"""The latency histogram, rendered the way Prometheus reads it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from trio_broadcast.server.metrics import LatencyHistogram


def test_latency_histogram_counts_cumulatively_with_inclusive_upper_bounds() -> None:
    registry = CollectorRegistry()
    histogram = LatencyHistogram("x_latency_seconds", "test", (0.001, 0.01))
    registry.register(histogram)
    for seconds in (0.0005, 0.001, 0.005, 0.5):
        histogram.observe(seconds)
    lines = generate_latest(registry).decode().splitlines()
    assert 'x_latency_seconds_bucket{le="0.001"} 2.0' in lines  # 0.001 itself counts as <= 0.001
    assert 'x_latency_seconds_bucket{le="0.01"} 3.0' in lines
    assert 'x_latency_seconds_bucket{le="+Inf"} 4.0' in lines
    assert "x_latency_seconds_count 4.0" in lines
    assert "x_latency_seconds_sum 0.5065" in lines
