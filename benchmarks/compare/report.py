"""The run's JSON document and its markdown rendering (headline ratios against the targets, then every figure)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.compare.stats import Figure

SCHEMA = 1

LABELS = {
    "stow_ct_1": "STOW-RS, CT 512x512 (1 uploader)",
    "stow_ct_4": "STOW-RS, CT 512x512 (4 uploaders)",
    "stow_small_4": "STOW-RS, small radiographs (4 uploaders)",
    "stow_wsi_1": "STOW-RS, whole-slide pyramid (1 uploader)",
    "cstore_ct": "C-STORE, CT 512x512 (storescu, 1 association)",
    "qido_patient_id": "QIDO-RS studies by PatientID",
    "qido_date_range": "QIDO-RS studies by StudyDate range (90 days)",
    "qido_name_prefix": "QIDO-RS studies by PatientName prefix",
    "metadata_series": "WADO-RS series metadata (CT)",
    "metadata_study": "WADO-RS study metadata (CT)",
    "frames_wsi_1": "WADO-RS random WSI tile, as stored (1 client)",
    "frames_wsi_16": "WADO-RS random WSI tile, as stored (16 clients)",
    "frames_ct_raw_1": "WADO-RS random CT frame, uncompressed (1 client)",
    "frames_ct_raw_16": "WADO-RS random CT frame, uncompressed (16 clients)",
    "frames_ct_stored_1": "WADO-RS random CT frame, transfer-syntax=* (1 client)",
    "frames_ct_stored_16": "WADO-RS random CT frame, transfer-syntax=* (16 clients)",
    "instance_ct": "WADO-RS whole CT instance (1 client)",
    "first_image": "Time to first image (QIDO series, metadata, frame)",
}


@dataclass(frozen=True, slots=True)
class Goal:
    """A target from issue #9: tessel's figure against Orthanc's, from the same run."""

    figure: str
    metric: str  # "p50_ms", "p99_ms" (lower is better) or "rate" (higher is better)
    ratio: float  # tessel / Orthanc must be <= this (latency) or >= this (rate)
    absolute_ms: float | None = None  # and the latency itself under this

    def ratio_of(self, ours: Figure, theirs: Figure) -> float | None:
        a, b = getattr(ours, self.metric), getattr(theirs, self.metric)
        if a is None or not b or ours.errors or theirs.errors:
            return None
        return float(a) / float(b)

    def met(self, ours: Figure, theirs: Figure) -> bool | None:
        ratio = self.ratio_of(ours, theirs)
        if ratio is None:
            return None
        ok = ratio >= self.ratio if self.metric == "rate" else ratio <= self.ratio
        if self.absolute_ms is not None:
            ok = ok and float(getattr(ours, self.metric)) < self.absolute_ms
        return ok

    def describe(self) -> str:
        if self.metric == "rate":
            return f"rate >= {self.ratio:g}x"
        text = f"{self.metric.removesuffix('_ms')} <= {_fraction(self.ratio)}"
        return text + (f" and < {self.absolute_ms:g} ms" if self.absolute_ms else "")


GOALS = (
    Goal("frames_wsi_16", "p99_ms", 1 / 100, absolute_ms=20),
    Goal("frames_ct_raw_16", "rate", 10),
    Goal("frames_ct_stored_16", "rate", 30),
    Goal("metadata_study", "p50_ms", 1 / 10),
    Goal("metadata_series", "p50_ms", 1 / 10),
    Goal("qido_patient_id", "p99_ms", 1 / 2),
    Goal("qido_date_range", "p99_ms", 1 / 2),
    Goal("qido_name_prefix", "p99_ms", 1 / 2),
    Goal("stow_ct_1", "rate", 1),
    Goal("stow_ct_4", "rate", 1),
    Goal("cstore_ct", "rate", 1),
)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gib = None
    return {"cpu": model, "cores": os.cpu_count(), "memory_GiB": memory_gib, "kernel": platform.release(),
            "os": _os_name(), "python": platform.python_version()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def tool_versions() -> dict[str, str]:
    out = {}
    for name, command in {"storescu": ["storescu", "--version"]}.items():
        try:
            text = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
            out[name] = next((line.strip() for line in text.splitlines() if "dcmtk" in line.lower()), text[:60])
        except (OSError, subprocess.SubprocessError):
            out[name] = "missing"
    return out


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def document(*, command: str, mode: str, settings: dict[str, Any], servers: dict[str, dict[str, Any]],
             figures: dict[str, list[Figure]], checks: dict[str, list[str]], load_start: Sequence[float],
             load_end: Sequence[float], other_work: dict[str, float], caveats: Sequence[str],
             started: dt.datetime) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "mode": mode,
        "machine": machine(),
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "other_work": other_work,
        "tools": tool_versions(),
        "settings": settings,
        "servers": servers,
        "checks": checks,
        "figures": {name: [f.to_json() for f in figs] for name, figs in figures.items()},
        "caveats": list(caveats),
    }


def figures_of(doc: dict[str, Any]) -> dict[str, dict[str, Figure]]:
    return {server: {f["name"]: Figure.from_json(f) for f in figs} for server, figs in doc["figures"].items()}


def markdown(doc: dict[str, Any], *, ours: str = "tessel", theirs: str = "orthanc") -> str:
    """The report: what ran where, the targets table, then every figure of every server."""
    figs = figures_of(doc)
    servers = doc["servers"]
    m = doc["machine"]
    lines = [f"## Benchmark: {_server_title(servers.get(ours, {'name': ours}))} vs "
             f"{_server_title(servers.get(theirs, {'name': theirs}))}", ""]
    lines.append(f"- date: {doc['date']} ({doc['mode']} run)")
    lines.append(f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_GiB']} GiB, {m['os']}, "
                 f"Linux {m['kernel']}, Python {m['python']}")
    lines.append(f"- load average at start / end: {_load(doc['load_average']['start'])} / "
                 f"{_load(doc['load_average']['end'])}")
    lines.append(f"- command: `{doc['command']}`")
    other = doc.get("other_work")
    if other is not None:  # measured: CPU that processes outside the run took during it
        lines.append(f"- other work during the run: {other['mean_cores']:g} cores on average "
                     f"(p95 {other['p95_cores']:g}), measured as the machine's busy CPU minus the run's own")
        busy = other["mean_cores"] > 0.25
    else:  # documents from before that measurement: the load average (which the run itself raises)
        busy = max([*doc["load_average"]["start"][:1], *doc["load_average"]["end"][:1]], default=0.0) > (
            m["cores"] or 1) / 2
    if busy:
        lines.append(f"- **provisional: other work was running on the {m['cores']} cores, so both servers got only "
                     "part of the CPU; rerun on a quiet machine**")
    for name, checks in doc["checks"].items():
        if checks:
            lines.append(f"- **{name} answered wrongly before measuring:** " + "; ".join(checks[:3]))
    lines.append("")
    if ours in figs and theirs in figs:
        lines += _goals_table(figs[ours], figs[theirs], ours, theirs)
    lines += _figures_table(figs, list(figs))
    lines += ["", "Caveats:", ""] + [f"- {c}" for c in doc["caveats"]]
    return "\n".join(lines) + "\n"


def _goals_table(ours: dict[str, Figure], theirs: dict[str, Figure], a: str, b: str) -> list[str]:
    lines = [f"| figure | {a} | {b} | {a} / {b} | target | met |", "|---|---:|---:|---:|---|---|"]
    for goal in GOALS:
        x, y = ours.get(goal.figure), theirs.get(goal.figure)
        if x is None or y is None:
            continue
        ratio = goal.ratio_of(x, y)
        met = goal.met(x, y)
        lines.append(f"| {LABELS.get(goal.figure, goal.figure)} | {_metric(x, goal.metric)} | "
                     f"{_metric(y, goal.metric)} | {_ratio(ratio)} | {goal.describe()} | "
                     f"{'-' if met is None else 'yes' if met else '**no**'} |")
    return lines + [""]


def _figures_table(figs: dict[str, dict[str, Figure]], servers: list[str]) -> list[str]:
    lines = ["| figure | server | p50 ms | p95 ms | p99 ms | rate /s | MB/s | client CPU | server CPU | "
             "server CPU ms/op | n |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = [n for n in LABELS if any(n in figs[s] for s in servers)]
    names += sorted({n for s in servers for n in figs[s]} - set(names))
    for name in names:
        for server in servers:
            f = figs[server].get(name)
            if f is None:
                continue
            errors = f" ({f.errors} errors)" if f.errors else ""
            lines.append(f"| {LABELS.get(name, name)} | {server}{errors} | {_num(f.p50_ms)} | {_num(f.p95_ms)} | "
                         f"{_num(f.p99_ms)} | {_num(f.rate)} {f.unit} | {_num(f.mb_per_s)} | {_num(f.client_cpu)} | "
                         f"{_num(f.server_cpu)} | {_num(f.server_cpu_ms_per_op)} | {f.count} |")
    return lines


def _metric(figure: Figure, metric: str) -> str:
    value = getattr(figure, metric)
    if figure.errors:
        return f"{figure.errors} errors"
    if metric == "rate":
        return f"{_num(value)} {figure.unit}/s"
    return f"{_num(value)} ms"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{_num(value)}x"
    return f"1/{_num(1 / value)}" if value > 0 else "0"


def _fraction(value: float) -> str:
    return f"1/{1 / value:g}" if value < 1 else f"{value:g}x"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _load(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _server_title(server: dict[str, Any]) -> str:
    name = {"tessel": "tessel", "orthanc": "Orthanc"}.get(server["name"], server["name"])
    version = server.get("version", "")
    plugin = f" + DICOMweb {server['dicomweb_plugin']}" if server.get("dicomweb_plugin") else ""
    return f"{name} {version}{plugin}".strip()
