"""Prometheus metrics: read from the hub's counters at scrape time, plus a latency histogram.

The fan-out path only bumps plain integers (see :meth:`.Hub.statistics` and
:class:`LatencyHistogram`); the collectors turn them into metric families when ``/metrics`` is
scraped, so metrics cost next to nothing per delivery.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from ..histogram import bucket_of, count_at_most
from .hub import Hub

PREFIX = "trio_broadcast"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HubCollector(Collector):
    """Exposes :meth:`.Hub.statistics` as Prometheus metric families."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        stats = self._hub.statistics()
        yield GaugeMetricFamily(
            f"{PREFIX}_connections", "Clients connected", value=stats.connections
        )
        if stats.cluster_connections is not None:  # with a backplane, once known
            yield GaugeMetricFamily(
                f"{PREFIX}_cluster_connections",
                "Clients connected to every server on the backplane",
                value=stats.cluster_connections,
            )
        # Not ``_connections``: a counter's family name is its name without ``_total``, and
        # OpenMetrics refuses a counter and a gauge that share one.
        yield CounterMetricFamily(
            f"{PREFIX}_connections_accepted",
            "Clients accepted since start",
            value=stats.connections_total,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_open_sessions",
            "Connection tasks still running, closing ones included",
            value=stats.open_sessions,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_messages_received",
            "Messages accepted for broadcast",
            value=stats.messages_in,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_deliveries",
            "Broadcast messages queued for a subscriber (fan-out)",
            value=stats.deliveries,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_messages_sent", "Events written to clients", value=stats.messages_out
        )
        yield CounterMetricFamily(
            f"{PREFIX}_frames_sent", "WebSocket frames written to clients", value=stats.frames_out
        )
        evictions = CounterMetricFamily(
            f"{PREFIX}_evictions", "Connections dropped or refused by policy", labels=["reason"]
        )
        for reason, count in sorted(stats.evictions.items()):
            evictions.add_metric([reason], count)
        yield evictions
        errors = CounterMetricFamily(
            f"{PREFIX}_client_errors", "Client frames refused, by error code", labels=["code"]
        )
        for code, count in sorted(stats.errors.items()):
            errors.add_metric([code], count)
        yield errors
        depth = GaugeMetricFamily(
            f"{PREFIX}_outbox_depth", "Events queued in outboxes", labels=["stat"]
        )
        depth.add_metric(["total"], stats.outbox_depth_total)
        depth.add_metric(["max"], stats.outbox_depth_max)
        yield depth
        yield GaugeMetricFamily(
            f"{PREFIX}_intake_depth",
            "Messages waiting for the broadcaster",
            value=stats.intake_depth,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_history_length", "Broadcasts kept for resume", value=stats.history_length
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_seq", "Newest broadcast sequence number", value=stats.seq
        )
        yield CounterMetricFamily(
            f"{PREFIX}_broadcaster_restarts", "Broadcaster crashes recovered", value=stats.restarts
        )


class LatencyHistogram(Collector):
    """A Prometheus histogram kept as the project's log-linear one (:mod:`..histogram`).

    ``prometheus_client.Histogram`` takes a lock and goes through several layers per
    observation, several microseconds; this one is observed for every write, and once per pass
    of the hub's broadcaster for all the clients it wrote, with a few integer operations. The
    Prometheus buckets are summed at scrape time (each may count values up to 1/128 above its
    bound, from the one log-linear bucket that straddles it). Single-threaded use only (the server's
    trio thread).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = list(buckets)  # seconds
        self._counts: collections.Counter[int] = collections.Counter()  # log-linear, in µs
        self._sum = 0.0

    def observe(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` deliveries that each took ``seconds``."""
        self._counts[bucket_of(int(seconds * 1_000_000))] += count
        self._sum += seconds * count

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        cumulative = [count_at_most(counts, int(bound * 1_000_000)) for bound in self._bounds]
        bounds = [repr(float(bound)) for bound in self._bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=list(zip(bounds, [*cumulative, sum(counts.values())], strict=True)),
            sum_value=self._sum,
        )


class Metrics:
    """One registry per app (so several apps can live in one process, as in tests)."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(HubCollector(hub))
        self.latency = LatencyHistogram(
            f"{PREFIX}_broadcast_latency_seconds",
            "From accepting a message to writing it to a subscriber's socket (oldest event "
            "of each frame)",
            LATENCY_BUCKETS,
        )
        self.registry.register(self.latency)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when ``accept`` (the request's
        ``Accept`` header) asks for it, as Prometheus does, else the Prometheus text format."""
        if "application/openmetrics-text" in accept:
            return generate_openmetrics(self.registry), OPENMETRICS_CONTENT_TYPE  # type: ignore[no-untyped-call]
        return generate_latest(self.registry), PROMETHEUS_CONTENT_TYPE
