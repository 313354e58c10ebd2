"""Prometheus metrics of one gateway process, served at `/metrics`.

Each app has its own registry (not prometheus-client's global one), so several apps in one
process (tests) do not collide. The queue gauges are read from the store at scrape time and
so cover every gateway process sharing it; the counters are this process's own (under
gunicorn with several workers, scrape each or use prometheus-client's multiprocess mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _QueueCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "shifter_imagegw_jobs", "Unfinished jobs of all gateways, by state", labels=["state"]
        )
        try:
            counts = self._counts()
        except Exception:  # a scrape must not fail because the database is away
            counts = {}
        for state, value in sorted(counts.items()):
            family.add_metric([state], value)
        yield family


class GatewayMetrics:
    def __init__(self, queue_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shifter_imagegw_requests",
            "API requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shifter_imagegw_request_seconds",
            "Time to answer API requests",
            ["route"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "shifter_imagegw_auth_failures",
            "Requests refused for their credential, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "shifter_imagegw_jobs_finished",
            "Jobs this process's workers finished, by kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(queue_counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
