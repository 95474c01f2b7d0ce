"""AHI API benchmark: GetImageFrame and GetImageSetMetadata latency through boto3 on loopback.

Imports a synthetic CT (default 300 slices of 512x512) with StartDICOMImportJob into a
`tessel serve` subprocess, then times GetImageFrame on random frames with 1 and 16
concurrent clients (threads, one boto3 client each) and GetImageSetMetadata of the
300-instance image set. Target: frame p99 < 20 ms at 16 clients.

    .venv/bin/python benchmarks/ahi.py [--slices 300] [--size 512] [--requests 2000] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
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
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from tessel.demo import synthetic

KEY_ID, SECRET = "TSLBENCHKEY000000001", "tessel-benchmark-secret-0123456789abcdef"
ROLE = "arn:aws:iam::000000000000:role/tessel-import"


def client(url: str) -> Any:
    return boto3.client("medical-imaging", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET,
                        config=Config(inject_host_prefix=False, retries={"max_attempts": 1},
                                      max_pool_connections=4))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port, dicom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSEL_", "AWS_"))}
    env.update(TESSEL_ACCESS_KEY_ID=KEY_ID, TESSEL_SECRET_ACCESS_KEY=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "tessel.cli.main", "serve", "--data-dir", str(data),
                             "--port", str(port), "--dicom-port", str(dicom_port)], env=env,
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def import_ct(hi: Any, data: Path, slices: int, size: int) -> tuple[str, str, list[str]]:
    source = data / "imports" / "ct"
    began = time.perf_counter()
    synthetic.write_ct_series(source, slices=slices, size=size, seed=1)
    print(f"wrote {slices} CT slices of {size}x{size} in {time.perf_counter() - began:.1f} s", flush=True)
    ds = hi.create_datastore(datastoreName="bench")["datastoreId"]
    began = time.perf_counter()
    job = hi.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, inputS3Uri=source.as_uri() + "/",
                                    outputS3Uri=(data / "imports" / "out").as_uri() + "/")
    while True:
        props = hi.get_dicom_import_job(datastoreId=ds, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.5)
    print(f"imported in {time.perf_counter() - began:.1f} s ({props['jobStatus']})", flush=True)
    result = Path(urllib.parse.unquote(props["outputS3Uri"].removeprefix("file://")))
    (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
    image_set = entry["imageSetId"]
    doc = json.loads(gzip.decompress(
        hi.get_image_set_metadata(datastoreId=ds, imageSetId=image_set)["imageSetMetadataBlob"].read()))
    frames = [f["ID"] for s in doc["Study"]["Series"].values() for i in s["Instances"].values()
              for f in i["ImageFrames"]]
    return ds, image_set, frames


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (f"p50 {p(0.50):6.2f} ms  p90 {p(0.90):6.2f} ms  p99 {p(0.99):6.2f} ms  "
            f"mean {statistics.fmean(ordered) * 1000:6.2f} ms  (n={len(ordered)})")


def frame_run(url: str, ds: str, image_set: str, frames: list[str], clients: int, requests: int) -> None:
    hs = [client(url) for _ in range(clients)]  # made here: creating clients is not thread-safe
    latencies: list[list[float]] = [[] for _ in range(clients)]
    sizes: list[int] = []
    barrier = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        rng, hi = random.Random(k), hs[k]
        for _ in range(20):  # warm the connection pool
            hi.get_image_frame(datastoreId=ds, imageSetId=image_set,
                               imageFrameInformation={"imageFrameId": rng.choice(frames)})["imageFrameBlob"].read()
        barrier.wait()
        for _ in range(requests // clients):
            began = time.perf_counter()
            out = hi.get_image_frame(datastoreId=ds, imageSetId=image_set,
                                     imageFrameInformation={"imageFrameId": rng.choice(frames)})
            data = out["imageFrameBlob"].read()
            latencies[k].append(time.perf_counter() - began)
            if k == 0:
                sizes.append(len(data))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = [x for run in latencies for x in run]
    print(f"GetImageFrame, {clients:2d} client(s): {percentiles(every)}  "
          f"{len(every) / elapsed:7.0f} frames/s  ~{statistics.fmean(sizes) / 1024:.0f} KiB/frame", flush=True)


def metadata_run(url: str, ds: str, image_set: str, requests: int) -> None:
    hi = client(url)
    latencies, size = [], 0
    for _ in range(requests):
        began = time.perf_counter()
        size = len(hi.get_image_set_metadata(datastoreId=ds, imageSetId=image_set)["imageSetMetadataBlob"].read())
        latencies.append(time.perf_counter() - began)
    print(f"GetImageSetMetadata ({size / 1024:.0f} KiB gzip): {percentiles(latencies)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--requests", type=int, default=2000, help="GetImageFrame calls per run")
    parser.add_argument("--quick", action="store_true", help="40 slices of 256x256, 400 requests")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.size, args.requests = 40, 256, 400
    with tempfile.TemporaryDirectory(prefix="tessel-bench-ahi-") as tmp:
        data = Path(tmp) / "data"
        proc, url = start_server(data)
        try:
            hi = client(url)
            ds, image_set, frames = import_ct(hi, data, args.slices, args.size)
            print(f"image set {image_set}: {len(frames)} frames", flush=True)
            for clients in (1, 16):
                frame_run(url, ds, image_set, frames, clients, args.requests)
            metadata_run(url, ds, image_set, 50)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
