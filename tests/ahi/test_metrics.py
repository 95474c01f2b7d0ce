"""GET /metrics: Prometheus text with request figures from every interface and state gauges."""

from __future__ import annotations

from typing import Any

import httpx
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.ahi.conftest import Server
from tests.stack import wait_until


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_on_each_interface_are_counted_with_their_outcome_and_latency(client: Any, server: Server) -> None:
    before = scrape(server)
    listed = 3
    for _ in range(listed):
        datastores = client.list_datastores()["datastoreSummaries"]
    try:
        client.get_datastore(datastoreId="0" * 32)
    except ClientError:
        pass
    # DICOMweb without credentials: refused, and counted as such
    assert httpx.get(f"{server.url}/datastore/{'0' * 32}/studies").status_code == 401

    ahi = {"interface": "ahi", "action": "medical-imaging:ListDatastores"}

    def refused(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sum(v for (name, labels), v in samples.items()
                   if name == "tessel_requests_total" and dict(labels).get("interface") == "dicomweb"
                   and dict(labels).get("outcome") == "denied")

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        now = scrape(server)
        done = value(now, "tessel_requests_total", **ahi, outcome="allowed") - \
            value(before, "tessel_requests_total", **ahi, outcome="allowed")
        return now if done >= listed and refused(now) > refused(before) else None

    after = wait_until(counted, timeout=30)
    assert after is not None, "the ListDatastores calls or the refused QIDO never showed in /metrics"
    assert value(after, "tessel_request_duration_seconds_count", **ahi) - \
        value(before, "tessel_request_duration_seconds_count", **ahi) >= listed
    assert value(after, "tessel_request_duration_seconds_sum", **ahi) > \
        value(before, "tessel_request_duration_seconds_sum", **ahi)
    assert value(after, "tessel_sent_bytes_total", interface="ahi") > value(before, "tessel_sent_bytes_total",
                                                                           interface="ahi")
    # state gauges, read at scrape time
    assert value(after, "tessel_datastores_by_status", status="ACTIVE") >= len(
        [d for d in datastores if d["datastoreStatus"] == "ACTIVE"])
    assert value(after, "tessel_datastores") >= len(datastores)
    assert value(after, "tessel_dimse_associations") == 0
    assert value(after, "process_resident_memory_bytes") > 10_000_000


def test_requests_to_no_route_share_one_label(server: Server) -> None:
    for n in range(5):
        httpx.get(f"{server.url}/no-such-thing-{n}")

    def others() -> bool:
        samples = scrape(server)
        actions = {dict(labels).get("action") for (name, labels), _ in samples.items()
                   if name == "tessel_requests_total"}
        return "other" in actions and not any(a and "no-such-thing" in a for a in actions)

    assert wait_until(others, timeout=30)
