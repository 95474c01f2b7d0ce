"""Before measuring reads: does the server answer correctly? (A fast wrong answer is no figure.)

Checked against the workload files themselves: instance counts per series, frames
byte for byte (uncompressed CT pixels and stored JPEG tiles), and the number of
studies each kind of QIDO query should match.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pydicom
from pydicom.encaps import get_frame

from benchmarks.compare import load, multipart
from benchmarks.compare.load import Target
from benchmarks.compare.scenarios import AS_STORED, RAW, Settings, frame_path, qido_plans
from benchmarks.compare.workloads import Dataset, Instance, Workloads


def run(target: Target, work: Workloads, settings: Settings, *, samples: int = 3) -> list[str]:
    """Every failed check, as a sentence; an empty list means the server answered right."""
    problems: list[str] = []
    for name in ("ct", "ct_stow4", "ct_cstore", "wsi"):
        problems += _series_counts(target, work[name])
    rng = random.Random(settings.seed)
    ct = work["ct"].instances
    for instance in rng.sample(list(ct), min(samples, len(ct))):
        problems += _raw_frame(target, instance)
    wsi = max(work["wsi"].instances, key=lambda i: i.frames)
    for frame in sorted({1, wsi.frames, *(rng.randrange(wsi.frames) + 1 for _ in range(samples))}):
        problems += _stored_tile(target, wsi, frame)
    problems += _qido_counts(target, work, settings)
    return problems


def _series_counts(target: Target, dataset: Dataset) -> list[str]:
    problems = []
    for study, series in dataset.series:
        expected = sum(1 for i in dataset.instances if i.series == series)
        response = load.fetch(target, load.json_request(f"/studies/{study}/series/{series}/instances"))
        found = len(load.as_json(response)) if response.status == 200 else 0
        if response.status != 200 or found != expected:
            problems.append(f"{dataset.name}: series {series} lists {found} instances "
                            f"(HTTP {response.status}), expected {expected}")
    return problems


def _raw_frame(target: Target, instance: Instance) -> list[str]:
    response = load.fetch(target, load.get(frame_path(instance, 1), RAW))
    if response.status != 200:
        return [f"CT frame {instance.sop}/1 uncompressed: HTTP {response.status}"]
    parts = multipart.split(response.body, response.header("content-type"))
    expected = pydicom.dcmread(instance.path).PixelData
    if parts != [expected]:
        return [f"CT frame {instance.sop}/1 uncompressed: {[len(p) for p in parts]} bytes differ from the "
                f"source's {len(expected)}"]
    return []


def _stored_tile(target: Target, instance: Instance, frame: int) -> list[str]:
    response = load.fetch(target, load.get(frame_path(instance, frame), AS_STORED))
    if response.status != 200:
        return [f"WSI tile {frame} as stored: HTTP {response.status}"]
    parts = multipart.split(response.body, response.header("content-type"))
    expected = _source_frame(instance.path, frame, instance.frames)
    # A server may pad an odd-length JPEG stream to even length, as DICOM fragments are.
    if len(parts) != 1 or parts[0].rstrip(b"\0") != expected.rstrip(b"\0"):
        return [f"WSI tile {frame} as stored: {[len(p) for p in parts]} bytes differ from the source's "
                f"{len(expected)}"]
    return []


_frames_cache: dict[str, bytes] = {}


def _source_frame(path: str, frame: int, frames: int) -> bytes:
    if path not in _frames_cache:
        _frames_cache.clear()
        _frames_cache[path] = pydicom.dcmread(path).PixelData
    return bytes(get_frame(_frames_cache[path], frame - 1, number_of_frames=frames))


def expected_studies(work: Workloads) -> dict[str, Callable[[str], int]]:
    """How many studies each QIDO kind must find, from the radiograph files' own attributes."""
    rs = work["radiographs"].instances

    def count(keep: Callable[[Instance], bool]) -> int:
        return len({i.study for i in rs if keep(i)})

    def in_range(value: str) -> Callable[[Instance], bool]:
        low, high = value.split("-")
        return lambda i: low <= i.study_date <= high

    return {
        "PatientID": lambda v: count(lambda i: i.patient_id == v),
        "StudyDate": lambda v: count(in_range(v)),
        "PatientName": lambda v: count(lambda i: i.patient_name.lower().startswith(v.rstrip("*").lower())),
    }


def _qido_counts(target: Target, work: Workloads, settings: Settings, per_kind: int = 10) -> list[str]:
    problems = []
    expected = expected_studies(work)
    for name, plan in qido_plans(work, settings).items():
        for request in plan[:per_kind]:
            key, value = next(iter(parse_qs(urlsplit(request.path).query).items()))
            want = expected[key](value[0])
            response = load.fetch(target, request)
            got = len(load.as_json(response)) if response.status == 200 else -1
            if got != want:
                problems.append(f"{name}: {request.path} found {got} studies (HTTP {response.status}), "
                                f"expected {want}")
    return problems

