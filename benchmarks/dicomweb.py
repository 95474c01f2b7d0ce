"""DICOMweb benchmark: STOW-RS, WADO-RS frames and metadata, QIDO-RS over a real `tessel serve`.

Generates a synthetic CT (default 300 slices of 512x512) and a whole-slide pyramid,
stores both with STOW-RS (instances/s, the server's peak memory), then times over HTTP
on loopback with httpx clients in threads:
- WADO-RS frames: random CT frames as stored (HTJ2K) and decoded (Explicit VR LE),
  random slide tiles as stored (JPEG), each with 1 and 16 clients;
- WADO-RS study and series metadata of the CT (first request, then warm);
- QIDO-RS study searches over --studies synthetic studies written into the query index.
Each line gives latency percentiles, throughput and the server's CPU time per request
(which, unlike latency, does not depend on what else the machine is doing).
Targets (issue 4): frame p99 < 20 ms at 16 clients; study metadata < 50 ms.

    .venv/bin/python benchmarks/dicomweb.py [--quick] [--slices 300] [--size 512] [--requests 2000]
                                            [--studies 100000] [--only frames,metadata,qido]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pydicom
from botocore.config import Config

from tessel.demo import synthetic

KEY_ID, SECRET = "TSLBENCHKEY000000001", "tessel-benchmark-secret-0123456789abcdef"
BOUNDARY = "tessel-benchmark-boundary"
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DECODED = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    env.update(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data),
                             "--port", str(port), "--dicom-port", str(free_port())], env=env,
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


class ServerCpu:
    """CPU seconds (user + system) the server process used between two points."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    def now(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {p(0.50):7.2f} ms  p99 {p(0.99):7.2f} ms  mean {statistics.fmean(ordered) * 1000:7.2f} ms"


def http_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, auth=(KEY_ID, SECRET), timeout=120)


# -- STOW-RS ----------------------------------------------------------------------------------------

def stow(url: str, datastore: str, paths: list[Path], cpu: ServerCpu, label: str) -> None:
    def body() -> Any:  # streamed from the files: the client holds one instance at a time
        for path in paths:
            yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            yield path.read_bytes()
            yield b"\r\n"
        yield f"--{BOUNDARY}--\r\n".encode()

    size = sum(p.stat().st_size for p in paths)
    before_cpu, began = cpu.now(), time.perf_counter()
    with http_client(url) as http:
        response = http.post(f"/datastore/{datastore}/studies", content=body(), headers={
            "Content-Type": f"multipart/related; type=application/dicom; boundary={BOUNDARY}"})
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, response.text[:500]
    print(f"STOW-RS {label}: {len(paths)} instances, {size / 1e6:.0f} MB in {elapsed:.1f} s = "
          f"{len(paths) / elapsed:6.1f} instances/s, {size / 1e6 / elapsed:5.1f} MB/s; server CPU "
          f"{(cpu.now() - before_cpu) / len(paths) * 1000:.1f} ms/instance, peak RSS {cpu.peak_rss_mb():.0f} MB",
          flush=True)


# -- WADO-RS ----------------------------------------------------------------------------------------

def frame_urls(url: str, datastore: str, study: str) -> list[str]:
    with http_client(url) as http:
        instances = http.get(f"/datastore/{datastore}/studies/{study}/instances",
                             params={"includefield": "00280008"}).json()
    urls = []
    for item in instances:
        base = item["00081190"]["Value"][0].split("/datastore/", 1)[1]
        frames = int((item.get("00280008") or {}).get("Value", [1])[0] or 1)
        urls += [f"/datastore/{base}/frames/{n}" for n in range(1, frames + 1)]
    return urls


def concurrent(url: str, clients: int, requests: int, call: Callable[[httpx.Client, random.Random], int],
               cpu: ServerCpu) -> tuple[list[float], float, float, float]:
    """(latencies, elapsed, server CPU seconds, mean bytes) of `requests` calls over `clients` threads."""
    https = [http_client(url) for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    sizes: list[int] = []
    barrier = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        rng, http = random.Random(k), https[k]
        for _ in range(10):  # warm the connection
            call(http, rng)
        barrier.wait()
        for _ in range(requests // clients):
            began = time.perf_counter()
            size = call(http, rng)
            latencies[k].append(time.perf_counter() - began)
            if k == 0:
                sizes.append(size)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    before, began = cpu.now(), time.perf_counter()
    for t in threads:
        t.join()
    elapsed, used = time.perf_counter() - began, cpu.now() - before
    for http in https:
        http.close()
    return [x for run in latencies for x in run], elapsed, used, statistics.fmean(sizes or [0])


def frames_run(url: str, urls: list[str], accept: str, label: str, requests: int, cpu: ServerCpu) -> None:
    def call(http: httpx.Client, rng: random.Random) -> int:
        response = http.get(rng.choice(urls), headers={"Accept": accept})
        if response.status_code != 200:
            raise SystemExit(f"{response.status_code}: {response.text[:300]}")
        return len(response.content)

    for clients in (1, 16):
        latencies, elapsed, used, size = concurrent(url, clients, requests, call, cpu)
        print(f"WADO-RS frames, {label:28s} {clients:2d} client(s): {percentiles(latencies)}  "
              f"{len(latencies) / elapsed:6.0f} frames/s  server CPU {used / len(latencies) * 1000:5.2f} ms/frame  "
              f"~{size / 1024:.0f} KiB", flush=True)


def metadata_run(url: str, path: str, label: str, requests: int, cpu: ServerCpu) -> None:
    with http_client(url) as http:
        began = time.perf_counter()
        first = http.get(path)
        cold = time.perf_counter() - began
        assert first.status_code == 200, first.text[:300]
    count = len(first.json())

    def call(http: httpx.Client, rng: random.Random) -> int:
        return len(http.get(path).content)

    latencies, elapsed, used, size = concurrent(url, 1, requests, call, cpu)
    print(f"WADO-RS {label} metadata ({count} instances, {size / 1024:.0f} KiB): first {cold * 1000:.1f} ms, "
          f"then {percentiles(latencies)}  server CPU {used / len(latencies) * 1000:.2f} ms/request", flush=True)


# -- QIDO-RS ----------------------------------------------------------------------------------------

def seed_studies(data: Path, datastore: str, count: int) -> None:
    """`count` studies straight into the query index (as STOW of one instance each would leave it)."""
    from tessel.catalog import Catalog
    from tessel.catalog.matching import name_key, name_words
    from tessel.catalog.sql.tables import dicom_studies

    rng = random.Random(7)
    first_names = ["John", "Jane", "Maria", "Wei", "Ahmed", "Olga", "Kenji", "Fatima", "Lars", "Ana"]
    last_names = [f"Name{n:04d}" for n in range(5000)] + ["Doe", "Smith", "Müller", "Nguyen"]
    modalities = ["CT", "MR", "CR", "DX", "US", "MG", "PT", "NM", "SM"]
    catalog = Catalog.open(f"sqlite:///{data / 'catalog.sqlite'}")
    began = time.perf_counter()
    try:
        rows = []
        for n in range(count):
            name = f"{rng.choice(last_names)}^{rng.choice(first_names)}"
            date = f"{2000 + n % 25:04d}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}"
            modality = rng.choice(modalities)
            attrs = {"PatientName": name, "PatientID": f"PID{n % 40000:06d}", "StudyDate": date,
                     "StudyTime": "101500", "AccessionNumber": f"A{n:08d}", "StudyID": str(n % 100),
                     "StudyDescription": f"{modality} STUDY", "StudyInstanceUID": f"1.2.826.0.1.3680043.9.{n}",
                     "PatientBirthDate": "19700101", "PatientSex": rng.choice("MFO")}
            rows.append({"datastore_id": datastore, "study_instance_uid": attrs["StudyInstanceUID"],
                         "patient_id": attrs["PatientID"], "patient_name": name_key(name),
                         "patient_name_words": name_words(name), "patient_birth_date": "19700101",
                         "patient_sex": attrs["PatientSex"], "study_date": date, "study_time": "101500.000000",
                         "accession_number": attrs["AccessionNumber"], "study_id": attrs["StudyID"],
                         "study_description": attrs["StudyDescription"], "referring_physician_name": None,
                         "referring_physician_name_words": None, "modalities_in_study": f"\\{modality}\\",
                         "sop_classes_in_study": "\\1.2.840.10008.5.1.4.1.1.2\\", "number_of_series": 1,
                         "number_of_instances": 100, "updated_at": 1.7e9 + n, "attrs": json.dumps(attrs)})
            if len(rows) == 10_000:
                with catalog.write() as conn:
                    conn.execute(dicom_studies.insert(), rows)
                rows = []
        if rows:
            with catalog.write() as conn:
                conn.execute(dicom_studies.insert(), rows)
    finally:
        catalog.close()
    print(f"QIDO-RS: {count} studies written to the query index in {time.perf_counter() - began:.1f} s", flush=True)


def qido_run(url: str, datastore: str, runs: int, cpu: ServerCpu) -> None:
    shapes: dict[str, Callable[[random.Random], dict[str, str]]] = {
        "all studies, newest first": lambda r: {"limit": "100"},
        "PatientID": lambda r: {"PatientID": f"PID{r.randrange(40000):06d}"},
        "00100020 (OHIF)": lambda r: {"00100020": f"PID{r.randrange(40000):06d}"},
        "PatientName prefix": lambda r: {"PatientName": f"name{r.randrange(5000):04d}*", "limit": "100"},
        "PatientName *x* (OHIF)": lambda r: {"PatientName": f"*name{r.randrange(5000):04d}*", "limit": "101"},
        "fuzzy PatientName": lambda r: {"PatientName": f"john name{r.randrange(5000):04d}",
                                        "fuzzymatching": "true"},
        "StudyDate range": lambda r: {"StudyDate": f"{2000 + r.randrange(25)}0101-{2000 + r.randrange(25)}0131",
                                      "limit": "100"},
        "AccessionNumber": lambda r: {"AccessionNumber": f"A{r.randrange(100000):08d}"},
        "ModalitiesInStudy": lambda r: {"ModalitiesInStudy": r.choice(["CT", "MR", "SM"]), "limit": "100"},
        "date + modality": lambda r: {"StudyDate": f"{2000 + r.randrange(25)}-", "ModalitiesInStudy": "MR",
                                      "limit": "100"},
        "page 50 (offset 5000)": lambda r: {"limit": "100", "offset": "5000"},
    }
    for label, params in shapes.items():
        def call(http: httpx.Client, rng: random.Random, params: Any = params) -> int:
            response = http.get(f"/datastore/{datastore}/studies", params=params(rng))
            assert response.status_code == 200, response.text[:300]
            return len(response.json())

        latencies, _, used, size = concurrent(url, 1, runs, call, cpu)
        print(f"QIDO-RS {label:28s}: {percentiles(latencies)}  ~{size:.0f} results  "
              f"server CPU {used / len(latencies) * 1000:.2f} ms", flush=True)


# -- main -----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slide", type=int, default=8192, help="whole-slide base width and height")
    parser.add_argument("--requests", type=int, default=2000, help="frame requests per run")
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--only", default="frames,metadata,qido", help="what to time after the STOW-RS")
    parser.add_argument("--quick", action="store_true", help="60 slices of 256x256, a 2048 slide, "
                                                             "400 requests, 10,000 studies")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.size, args.slide, args.requests, args.studies = 60, 256, 2048, 400, 10_000
    only = set(args.only.split(","))
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tessel-bench-dicomweb-") as tmp:
        data = Path(tmp) / "data"
        began = time.perf_counter()
        ct = synthetic.write_ct_series(Path(tmp) / "ct", slices=args.slices, size=args.size, seed=1)
        slide = synthetic.write_wsi_pyramid(Path(tmp) / "slide", base_width=args.slide, base_height=args.slide,
                                            levels=4)
        print(f"wrote {len(ct)} CT slices of {args.size}x{args.size} and a {args.slide}x{args.slide} slide "
              f"in {time.perf_counter() - began:.1f} s", flush=True)
        proc, url = start_server(data)
        cpu = ServerCpu(proc.pid)
        try:
            ahi = boto3.client("medical-imaging", endpoint_url=url, region_name="us-east-1",
                               aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                               config=Config(inject_host_prefix=False))
            datastore = ahi.create_datastore(datastoreName="bench")["datastoreId"]
            stow(url, datastore, ct, cpu, "CT")
            stow(url, datastore, slide, cpu, "slide")
            ct_study = pydicom.dcmread(ct[0], stop_before_pixels=True)
            slide_study = pydicom.dcmread(slide[0], stop_before_pixels=True).StudyInstanceUID
            if "frames" in only:
                ct_frames = frame_urls(url, datastore, ct_study.StudyInstanceUID)
                tiles = frame_urls(url, datastore, slide_study)
                frames_run(url, ct_frames, AS_STORED, "CT as stored (HTJ2K)", args.requests, cpu)
                frames_run(url, ct_frames, DECODED, "CT decoded (Explicit LE)", args.requests, cpu)
                frames_run(url, tiles, AS_STORED, "slide tiles as stored (JPEG)", args.requests, cpu)
            if "metadata" in only:
                study_path = f"/datastore/{datastore}/studies/{ct_study.StudyInstanceUID}"
                metadata_run(url, f"{study_path}/metadata", "CT study", 100, cpu)
                metadata_run(url, f"{study_path}/series/{ct_study.SeriesInstanceUID}/metadata", "CT series", 100,
                             cpu)
            if "qido" in only:
                seed_studies(data, datastore, args.studies)
                qido_run(url, datastore, 100, cpu)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
