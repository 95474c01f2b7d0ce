"""DIMSE benchmark: C-STORE ingest of a 300-slice 512x512 CT with dcmtk's storescu, beside an import job.

Starts a real `tessel serve` (subprocess, embedded catalog, its own data dir), sends the
series with `storescu` on one association (each C-STORE answered only once the instance is
durable), and times it to the end of the association (the release waits until the series is
committed). Then imports the same files with an import job into a second datastore of a
fresh server, and prints both rates with the load average.

Run on demand: `.venv/bin/python benchmarks/dimse.py [--quick] [--slices N] [--json FILE]`.
Needs dcmtk (scripts/test-setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
from botocore.config import Config

from tessel.demo import synthetic

KEY_ID = "TSLBENCHDIMSE0000001"
SECRET = "tessel-bench-dimse-secret-0123456789abc"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`tessel serve` on free ports over its own data dir."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        self.data_dir = data_dir
        self.port, self.dicom_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
        env.update(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir.parent / f"{data_dir.name}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data_dir), "--port",
             str(self.port), "--dicom-port", str(self.dicom_port), "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"tessel serve exited: {(data_dir.parent / f'{data_dir.name}.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("tessel serve did not become healthy")
            time.sleep(0.1)
        self.ahi = boto3.client("medical-imaging", endpoint_url=f"http://127.0.0.1:{self.port}",
                                region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                                config=Config(inject_host_prefix=False))

    def datastore(self, name: str) -> str:
        return str(self.ahi.create_datastore(datastoreName=name)["datastoreId"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def instances(server: Server, datastore_id: str) -> int:
    sets = server.ahi.search_image_sets(datastoreId=datastore_id, maxResults=50)["imageSetsMetadataSummaries"]
    total = 0
    for s in sets:
        meta = server.ahi.get_image_set_metadata(datastoreId=datastore_id, imageSetId=s["imageSetId"])
        doc = json.loads(__import__("gzip").decompress(meta["imageSetMetadataBlob"].read()))
        total += sum(len(series["Instances"]) for series in doc["Study"]["Series"].values())
    return total


def wait_visible(server: Server, datastore_id: str, expected: int, timeout: float = 600) -> int:
    """Poll the AHI API until `expected` instances are visible; the number seen."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = instances(server, datastore_id)
        if seen >= expected:
            break
        time.sleep(0.2)
    return seen


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the server process and by its children (staging processes)."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    children = 0.0
    for child in proc.children(recursive=True):
        try:
            t = child.cpu_times()
            children += t.user + t.system
        except psutil.Error:
            pass
    return times.user + times.system, children


def c_store(server: Server, files: list[Path], proposal: str) -> float:
    """Seconds for storescu to send every file on one association (each one acknowledged once durable)."""
    cmd = ["storescu", proposal, "-aet", "BENCH", "-aec", "TESSEL", "127.0.0.1", str(server.dicom_port),
           *map(str, files)]
    started = time.perf_counter()
    # dcmtk turns Nagle's algorithm off on its side only when TCP_NODELAY=1 (tessel always does).
    result = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TCP_NODELAY="1"))
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or "Status" in result.stderr and "Success" not in result.stderr:
        raise SystemExit(f"storescu failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def import_job(server: Server, datastore_id: str, folder: Path) -> float:
    """Seconds from StartDICOMImportJob to COMPLETED (polled every 50 ms)."""
    out = server.data_dir / "imports" / "out"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    job = server.ahi.start_dicom_import_job(datastoreId=datastore_id, dataAccessRoleArn="arn:aws:iam::123456789012:role/tessel-import",
                                            inputS3Uri=folder.as_uri() + "/", outputS3Uri=out.as_uri() + "/")
    while True:
        props = server.ahi.get_dicom_import_job(datastoreId=datastore_id, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if props["jobStatus"] != "COMPLETED":
        raise SystemExit(f"import job failed: {props}")
    return elapsed


def row(how: str, files: list[Path], seconds: float, stored: int, server_cpu: float | None = None,
        worker_cpu: float | None = None) -> dict[str, Any]:
    total = sum(p.stat().st_size for p in files)
    per = (lambda cpu: "-" if cpu is None else round(cpu / len(files) * 1000, 1))
    return {"how": how, "instances": stored, "input_MB": round(total / 1e6, 1), "seconds": round(seconds, 2),
            "instances_per_s": round(len(files) / seconds, 1), "MB_per_s": round(total / 1e6 / seconds, 1),
            "server_cpu_ms_per_instance": per(server_cpu), "staging_cpu_ms_per_instance": per(worker_cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 slices of 256x256 (a smoke run)")
    parser.add_argument("--slices", type=int, help="number of CT slices (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="import job worker processes")
    parser.add_argument("--proposal", default="-xe", help="storescu transfer syntax option (default -xe)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not shutil.which("storescu"):
        raise SystemExit("storescu (dcmtk) is missing: run scripts/test-setup.sh")
    slices, size = (30, 256) if args.quick else (args.slices or 300, 512)
    work = Path(tempfile.mkdtemp(prefix="tessel-bench-dimse-"))
    try:
        ct = work / "data-import" / "imports" / "ct"  # under the import server's import roots
        files = synthetic.write_ct_series(ct, slices=slices, size=size, seed=1)
        load_before = os.getloadavg()
        results = []
        server = Server(work / "data-dimse", args.workers)
        try:
            store_into = server.datastore("dimse")
            warm = synthetic.write_ct_series(work / "warm", slices=2, size=size, seed=2)
            c_store(server, warm, args.proposal)  # the staging processes start with the first instance
            wait_visible(server, store_into, len(warm))
            cpu_before = cpu_seconds(server.proc.pid)
            started = time.perf_counter()
            seconds = c_store(server, files, args.proposal)
            cpu_acked = cpu_seconds(server.proc.pid)
            results.append(row(f"C-STORE acknowledged (storescu {args.proposal})", files, seconds, len(files),
                               cpu_acked[0] - cpu_before[0]))
            stored = wait_visible(server, store_into, len(files) + len(warm)) - len(warm)
            cpu_after = cpu_seconds(server.proc.pid)
            results.append(row("C-STORE until visible in the AHI API", files, time.perf_counter() - started, stored,
                               cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
        finally:
            server.stop()
        server = Server(work / "data-import", args.workers)
        try:
            target = server.datastore("import")
            cpu_before = cpu_seconds(server.proc.pid)
            seconds = import_job(server, target, ct)
            cpu_after = cpu_seconds(server.proc.pid)
            results.append(row(f"import job ({args.workers} workers)", files, seconds, instances(server, target),
                               cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
        finally:
            server.stop()
        load_after = os.getloadavg()
        print(f"{slices}-slice {size}x{size} CT, 16-bit, Explicit VR Little Endian files; tessel stores HTJ2K lossless")
        cols = list(results[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in results:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
        print(f"load average (1/5/15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
              f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} CPUs")
        if args.json:
            args.json.write_text(json.dumps({"results": results, "loadavg_before": load_before,
                                             "loadavg_after": load_after}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
