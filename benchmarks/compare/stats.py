"""Percentiles and the figure record every scenario produces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"), so a reader can check any figure.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Figure:
    """One measured figure: latencies in milliseconds and/or a rate, with the CPU it took.

    `client_cpu` and `server_cpu` are in cores (CPU seconds per wall second): a client
    near 1.0 (one core, Python's GIL) is the bottleneck, not the server. The server's CPU
    per operation depends little on what else the machine runs, unlike latencies.
    """

    name: str
    unit: str  # what `rate` counts per second ("requests", "instances", "frames")
    count: int  # measured operations (warm-up excluded)
    seconds: float  # wall time of the measured operations
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    rate: float | None = None
    mb_per_s: float | None = None
    client_cpu: float | None = None
    server_cpu: float | None = None
    server_cpu_ms_per_op: float | None = None  # the server's CPU per operation: hardly moved by other load
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        data = dict(data)
        if "server_cpu_ms_per_op" not in data and data.get("server_cpu") is not None and data.get("count"):
            # documents written before the field existed: the same value from what they do have
            data["server_cpu_ms_per_op"] = _round(data["server_cpu"] * data["seconds"] * 1000 / data["count"])
        return cls(**data)


def summarise(
    name: str,
    unit: str,
    latencies_s: Sequence[float],
    seconds: float,
    *,
    operations: int | None = None,
    payload_bytes: int = 0,
    client_cpu_s: float | None = None,
    server_cpu_s: float | None = None,
    errors: int = 0,
) -> Figure:
    """Turn raw per-request latencies (seconds) over `seconds` of wall time into a Figure.

    `operations` is what the rate counts when one request does several (frames in a
    batch); by default one per latency sample.
    """
    count = len(latencies_s) if operations is None else operations
    ms = [s * 1000 for s in latencies_s]
    wall = max(seconds, 1e-9)
    return Figure(
        name=name,
        unit=unit,
        count=count,
        seconds=round(seconds, 3),
        p50_ms=_round(percentile(ms, 50)) if ms else None,
        p95_ms=_round(percentile(ms, 95)) if ms else None,
        p99_ms=_round(percentile(ms, 99)) if ms else None,
        rate=_round(count / wall),
        mb_per_s=_round(payload_bytes / 1e6 / wall) if payload_bytes else None,
        client_cpu=round(client_cpu_s / wall, 2) if client_cpu_s is not None else None,
        server_cpu=round(server_cpu_s / wall, 2) if server_cpu_s is not None else None,
        server_cpu_ms_per_op=_round(server_cpu_s * 1000 / count) if server_cpu_s is not None and count else None,
        errors=errors,
    )


def _round(value: float) -> float:
    """Three significant figures, enough for a table and stable in JSON."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = 2 - math.floor(math.log10(abs(value)))
    return round(value, max(digits, 0))
