"""`GET /metrics`: Prometheus text for one `tessel serve` process.

Request figures come from the audit trail's writer thread, which already sees every request
on every interface (AHI, DICOMweb, viewer, DIMSE): counting there costs the request path
nothing, and the figures lag by at most the audit flush interval (a quarter second). State
figures (datastores, import jobs, queues) are read when Prometheus scrapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from tessel.audit.records import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a cached frame (~1 ms) to a whole-slide STOW-RS upload (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
# Actions are operation names (medical-imaging:GetImageFrame, dimse:C-STORE, ...); anything else
# (a request to no route) is counted as "other", so a scanner cannot grow the label set.
_ACTION = re.compile(r"^[a-z-]+:[A-Za-z0-9_-]{1,64}$")


class Metrics:
    def __init__(self, states: Sequence[Callable[[], Iterable[GaugeMetricFamily]]] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["interface", "action"]
        self.requests = Counter("tessel_requests", "Requests answered, by interface, action and outcome "
                                "(allowed, denied, invalid, error)", [*labels, "outcome"], registry=self.registry)
        self.latency = Histogram("tessel_request_duration_seconds", "Time to answer a request",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.received = Counter("tessel_received_bytes", "Request bytes received", ["interface"],
                                registry=self.registry)
        self.sent = Counter("tessel_sent_bytes", "Response bytes sent", ["interface"], registry=self.registry)
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open files
        self.registry.register(_State(states))

    def observe(self, events: Iterable[Event]) -> None:
        """Count a batch of requests (called by the audit writer after it wrote them)."""
        for e in events:
            action = e.action if _ACTION.match(e.action or "") else "other"
            self.requests.labels(e.interface, action, e.outcome or "allowed").inc()
            if e.duration_ms is not None:
                self.latency.labels(e.interface, action).observe(e.duration_ms / 1000)
            if e.bytes_in:
                self.received.labels(e.interface).inc(e.bytes_in)
            if e.bytes_out:
                self.sent.labels(e.interface).inc(e.bytes_out)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _State:
    """Gauges read at scrape time from the parts that own them."""

    def __init__(self, sources: Sequence[Callable[[], Iterable[GaugeMetricFamily]]]) -> None:
        self.sources = sources

    def describe(self) -> list[Any]:
        return []  # computed per scrape: nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for source in self.sources:
            yield from source()


def gauge(name: str, documentation: str, value: float | None = None, *,
          labels: Sequence[str] = (), samples: Iterable[tuple[Sequence[str], float]] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, value=value, labels=list(labels) if labels else None)
    for label_values, sample in samples:
        family.add_metric(list(label_values), sample)
    return family
