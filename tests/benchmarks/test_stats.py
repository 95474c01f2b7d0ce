"""Percentiles and figures: the numbers every table is made of."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.compare.stats import Figure, percentile, summarise


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpys_linear_definition(q: float) -> None:
    samples = list(np.random.default_rng(3).exponential(10.0, size=257))
    assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)))


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.5], 99) == 7.5


def test_percentile_does_not_depend_on_order() -> None:
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile([1, 2, 3, 4], 50) == 2.5


@pytest.mark.parametrize("samples,q", [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_what_has_no_answer(samples: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(samples, q)


def test_summarise_turns_seconds_into_milliseconds_and_a_rate() -> None:
    latencies = [0.010] * 98 + [0.100, 0.200]
    fig = summarise("x", "frames", latencies, 2.0, payload_bytes=4_000_000, client_cpu_s=0.5, server_cpu_s=3.0)
    assert fig.count == 100
    assert fig.p50_ms == 10.0
    assert fig.p95_ms == 10.0
    assert 100 < fig.p99_ms < 200
    assert fig.rate == 50.0
    assert fig.mb_per_s == 2.0
    assert fig.client_cpu == 0.25 and fig.server_cpu == 1.5
    assert fig.server_cpu_ms_per_op == 30.0


def test_summarise_counts_operations_when_a_request_does_several() -> None:
    fig = summarise("x", "instances", [], 4.0, operations=300, payload_bytes=0)
    assert fig.rate == 75.0 and fig.count == 300
    assert fig.p50_ms is None and fig.mb_per_s is None


def test_figures_round_trip_through_json() -> None:
    fig = summarise("x", "requests", [0.0123, 0.0456], 1.0, errors=2)
    fig.notes.append("a note")
    assert Figure.from_json(fig.to_json()) == fig


def test_figures_keep_three_significant_digits() -> None:
    fig = summarise("x", "requests", [0.123456], 0.7)
    assert fig.p50_ms == 123.0
    assert fig.rate == 1.43
