"""What is measured: one function per figure, each through DICOMweb or DIMSE only.

Every function takes the target and the run's settings and returns `Figure`s. The
request plans are drawn from the workloads with fixed seeds, so each server gets
exactly the same requests in the same order.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from benchmarks.compare import load, multipart, workloads
from benchmarks.compare.load import Request, Response, Target
from benchmarks.compare.stats import Figure, summarise
from benchmarks.compare.workloads import Dataset, Instance, Workloads

RAW = 'multipart/related; type="application/octet-stream"'  # uncompressed: the server decodes
AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCE = 'multipart/related; type="application/dicom"'  # default: Explicit VR Little Endian
JSON = "application/dicom+json"


@dataclass(frozen=True, slots=True)
class Settings:
    duration: float = 10.0  # seconds of measurement per read scenario (at least)
    min_requests: int = 30  # slow servers still give this many samples
    seed: int = 20240601
    plan_length: int = 5000  # distinct requests drawn per plan (then cycled)
    stow_uploaders: tuple[int, ...] = (1, 4)
    concurrency: tuple[int, ...] = (1, 16)
    quiet_s: float = 1.0  # before each step, the server's CPU stays idle this long


def frame_path(instance: Instance, frame: int) -> str:
    return f"/studies/{instance.study}/series/{instance.series}/instances/{instance.sop}/frames/{frame}"


def instance_path(instance: Instance) -> str:
    return f"/studies/{instance.study}/series/{instance.series}/instances/{instance.sop}"


def figure_from(name: str, unit: str, result: load.LoadResult, *, operations: int | None = None,
                payload_bytes: int | None = None) -> Figure:
    figure = summarise(name, unit, result.latencies, result.seconds, operations=operations,
                       payload_bytes=result.payload_bytes if payload_bytes is None else payload_bytes,
                       client_cpu_s=result.client_cpu_s, server_cpu_s=result.server_cpu_s,
                       errors=len(result.errors))
    figure.notes.extend(result.errors[:5])
    return figure


# -- ingest -----------------------------------------------------------------------------------


def stow(target: Target, dataset: Dataset, name: str, uploaders: int, settings: Settings) -> Figure:
    """STOW-RS, one instance per request, `uploaders` at once; each instance is new to the server."""
    plan = []
    for instance in dataset.instances:
        body, content_type = multipart.stow_body([Path(instance.path).read_bytes()])
        plan.append(Request("POST", "/studies", (("Content-Type", content_type), ("Accept", JSON)), body))
    result = load.run_load(target, plan, clients=uploaders, duration=0, min_requests=len(plan),
                           max_requests=len(plan), warmup_per_client=0, check=stow_stored)
    figure = figure_from(name, "instances", result, payload_bytes=dataset.bytes if not result.errors else 0)
    if not result.errors:
        figure.notes.append(f"{len(plan)} instances, {dataset.bytes / 1e6:.0f} MB, one per request")
    return figure


def stow_stored(request: Request, response: Response) -> str | None:
    """200, or 202 (stored with warnings), with no Failed SOP Sequence items."""
    if response.status not in (200, 202):
        return f"STOW-RS: HTTP {response.status} {response.body[:200]!r}"
    try:
        failed = load.as_json(response).get("00081198", {}).get("Value") or []
    except (ValueError, AttributeError):
        return f"STOW-RS: HTTP {response.status} with an answer that is not DICOM JSON: {response.body[:200]!r}"
    return f"STOW-RS: {len(failed)} instance(s) failed: {failed[:1]}" if failed else None


def cstore(target: Target, dataset: Dataset, folder: Path, name: str) -> Figure:
    """dcmtk's storescu sends the folder over one association; rate over the whole run."""
    command = ["storescu", "-aet", "BENCH", "-aec", target.ae_title, "--scan-directories",
               "--no-halt", target.dimse_host, str(target.dimse_port), str(folder)]
    server0 = load.cpu_seconds(target.pids)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        # storescu (DCMTK) leaves Nagle's algorithm on unless TCP_NODELAY=1: each PDU would wait for an ACK.
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ, TCP_NODELAY="1"))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        log = err.read().decode(errors="replace")
    figure = summarise(name, "instances", [], seconds, operations=len(dataset.instances),
                       payload_bytes=dataset.bytes, client_cpu_s=usage.ru_utime + usage.ru_stime,
                       server_cpu_s=load.cpu_seconds(target.pids) - server0)
    failures = log.count("Store Failed") + log.count("E: ")
    if proc.returncode != 0 or failures:
        figure.errors = max(failures, 1)
        figure.notes.append(f"storescu exit {proc.returncode}: {log.strip().splitlines()[-1:]} ")
    figure.notes.append(f"{len(dataset.instances)} instances over one association (storescu)")
    return figure


# -- search and metadata ------------------------------------------------------------------------


def qido_plans(work: Workloads, settings: Settings) -> dict[str, list[Request]]:
    rs = work["radiographs"]
    n, seed = settings.plan_length, settings.seed
    return {
        "qido_patient_id": [load.json_request(f"/studies?PatientID={quote(v, safe='*')}")
                            for v in workloads.patient_id_queries(rs, n, seed)],
        "qido_date_range": [load.json_request(f"/studies?StudyDate={v}")
                            for v in workloads.date_range_queries(rs, n, seed + 1)],
        "qido_name_prefix": [load.json_request(f"/studies?PatientName={quote(v, safe='*')}")
                             for v in workloads.name_prefix_queries(rs, n, seed + 2)],
    }


def read(target: Target, name: str, unit: str, plan: Sequence[Request], clients: int, settings: Settings, *,
         frames_per_request: int = 1) -> Figure:
    result = load.run_load(target, plan, clients=clients, duration=settings.duration,
                           min_requests=max(settings.min_requests, 2 * clients))
    operations = len(result.latencies) * frames_per_request
    figure = figure_from(name, unit, result, operations=operations)
    if clients > 1:
        figure.notes.append(f"{clients} concurrent clients")
    return figure


def metadata_plans(work: Workloads) -> dict[str, list[Request]]:
    study, series = work["ct"].series[0]
    return {
        "metadata_series": [load.json_request(f"/studies/{study}/series/{series}/metadata")],
        "metadata_study": [load.json_request(f"/studies/{study}/metadata")],
    }


# -- frames and instances -----------------------------------------------------------------------


def wsi_tile_plan(work: Workloads, settings: Settings) -> list[Request]:
    """Random tiles of the largest level (the one with 20,000+ frames), as stored (JPEG)."""
    picks = workloads.random_frames(work["wsi"], settings.plan_length, settings.seed + 3, largest_only=True)
    return [load.get(frame_path(i, f), AS_STORED) for i, f in picks]


def ct_frame_plan(work: Workloads, settings: Settings, accept: str) -> list[Request]:
    picks = workloads.random_frames(work["ct"], settings.plan_length, settings.seed + 4)
    return [load.get(frame_path(i, f), accept) for i, f in picks]


def instance_plan(work: Workloads, settings: Settings) -> list[Request]:
    picks = workloads.random_frames(work["ct"], settings.plan_length, settings.seed + 5)
    return [load.get(instance_path(i), INSTANCE) for i, _ in picks]


def first_image(target: Target, work: Workloads, settings: Settings) -> Figure:
    """A viewer opening the CT: QIDO series -> series metadata -> the first slice's frame.

    The client parses the metadata JSON to find the lowest Instance Number, as a
    viewer must; the time of all three requests is one sample.
    """
    study = work["ct"].studies[0]
    conn = load.Connection(target)
    latencies: list[float] = []
    errors: list[str] = []

    def once() -> None:
        series = _json(conn.send(load.json_request(f"/studies/{study}/series")))
        series_uid = series[0]["0020000E"]["Value"][0]
        meta = _json(conn.send(load.json_request(f"/studies/{study}/series/{series_uid}/metadata")))
        first = min(meta, key=lambda m: int(m.get("00200013", {}).get("Value", [0])[0]))
        sop = first["00080018"]["Value"][0]
        frame = conn.send(load.get(f"/studies/{study}/series/{series_uid}/instances/{sop}/frames/1", AS_STORED))
        if frame.status != 200 or not frame.body:
            raise RuntimeError(f"first frame: HTTP {frame.status}")

    try:
        once()  # warm-up, discarded
        cpu0, server0, wall0 = time.process_time(), load.cpu_seconds(target.pids), time.perf_counter()
        while time.perf_counter() - wall0 < settings.duration or len(latencies) < settings.min_requests:
            started = time.perf_counter()
            try:
                once()
            except (RuntimeError, KeyError, IndexError, ValueError) as exc:
                errors.append(repr(exc))
                if len(errors) > 5:
                    break
                continue
            latencies.append(time.perf_counter() - started)
        seconds = time.perf_counter() - wall0
        figure = summarise("first_image", "sequences", latencies, seconds,
                           client_cpu_s=time.process_time() - cpu0,
                           server_cpu_s=load.cpu_seconds(target.pids) - server0, errors=len(errors))
    finally:
        conn.close()
    figure.notes.extend(errors[:3])
    return figure


def _json(response: Response) -> list[dict[str, dict[str, list[object]]]]:
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.body[:200]!r}")
    data = load.as_json(response)
    if not isinstance(data, list) or not data:
        raise ValueError("an empty or non-list DICOM JSON answer")
    return data


# -- the whole sequence -------------------------------------------------------------------------

Log = Callable[[str], None]


def ingest_all(target: Target, work: Workloads, settings: Settings, log: Log) -> list[Figure]:
    """Store every workload; the ingest figures are taken on the way."""
    figures = []
    for uploaders, dataset in zip(settings.stow_uploaders, ("ct", "ct_stow4"), strict=True):
        figures.append(stow(target, work[dataset], f"stow_ct_{uploaders}", uploaders, settings))
        log(_line(figures[-1]))
        load.wait_idle(target.pids, quiet_for=settings.quiet_s)
    figures.append(stow(target, work["radiographs"], "stow_small_4", 4, settings))
    log(_line(figures[-1]))
    figures.append(stow(target, work["wsi"], "stow_wsi_1", 1, settings))
    log(_line(figures[-1]))
    load.wait_idle(target.pids, quiet_for=settings.quiet_s)
    figures.append(cstore(target, work["ct_cstore"], work.folder_of("ct_cstore"), "cstore_ct"))
    log(_line(figures[-1]))
    return figures


def read_all(target: Target, work: Workloads, settings: Settings, log: Log,
             only: Callable[[str], bool] = lambda _: True) -> list[Figure]:
    figures: list[Figure] = []

    def measure(name: str, make: Callable[[], Figure]) -> None:
        if not only(name):
            return
        load.wait_idle(target.pids, quiet_for=settings.quiet_s)
        figures.append(make())
        log(_line(figures[-1]))

    for name, plan in qido_plans(work, settings).items():
        measure(name, lambda plan=plan, name=name: read(target, name, "requests", plan, 1, settings))
    for name, plan in metadata_plans(work).items():
        measure(name, lambda plan=plan, name=name: read(target, name, "requests", plan, 1, settings))
    tiles = wsi_tile_plan(work, settings)
    raw, stored = ct_frame_plan(work, settings, RAW), ct_frame_plan(work, settings, AS_STORED)
    for clients in settings.concurrency:
        measure(f"frames_wsi_{clients}",
                lambda c=clients: read(target, f"frames_wsi_{c}", "frames", tiles, c, settings))
        measure(f"frames_ct_raw_{clients}",
                lambda c=clients: read(target, f"frames_ct_raw_{c}", "frames", raw, c, settings))
        measure(f"frames_ct_stored_{clients}",
                lambda c=clients: read(target, f"frames_ct_stored_{c}", "frames", stored, c, settings))
    measure("instance_ct", lambda: read(target, "instance_ct", "instances", instance_plan(work, settings), 1,
                                        settings))
    measure("first_image", lambda: first_image(target, work, settings))
    return figures


def _line(figure: Figure) -> str:
    parts = [f"{figure.name:<20}"]
    if figure.p50_ms is not None:
        parts.append(f"p50 {figure.p50_ms:>9} ms  p95 {figure.p95_ms:>9} ms  p99 {figure.p99_ms:>9} ms")
    parts.append(f"{figure.rate:>9} {figure.unit}/s")
    if figure.mb_per_s:
        parts.append(f"{figure.mb_per_s} MB/s")
    parts.append(f"client cpu {figure.client_cpu}  server cpu {figure.server_cpu}  n={figure.count}")
    if figure.errors:
        parts.append(f"ERRORS {figure.errors}: {figure.notes[:1]}")
    return "  ".join(parts)
