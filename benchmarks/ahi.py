"""AHI API benchmark: GetImageFrame and GetImageSetMetadata latency through boto3 on loopback.

Imports, with StartDICOMImportJob into a `tessel serve` subprocess, a synthetic CT
(default 300 slices of 512x512, 16-bit, stored as HTJ2K) and a whole-slide pyramid
(default 8192x6144 at level 0 in 256x256 JPEG tiles, stored as they came), then times:
- GetImageFrame on random CT frames and on random WSI tiles, with 1 and 16 concurrent
  clients (16 client processes by default, one boto3 client each, so that the client
  side does not queue behind one GIL); then the same with "raw" clients that send
  requests botocore signed beforehand over http.client, which leaves out boto3's own
  per-call cost (on a 2-core machine the 16 boto3 clients compete with the server);
- GetImageSetMetadata of the 300-instance CT image set.
Targets (issue #3): frame p99 < 20 ms at 16 clients. The load average is printed with
every figure: other work on the machine shows in the numbers.

    .venv/bin/python benchmarks/ahi.py [--slices 300] [--size 512] [--wsi 8192x6144] [--requests 2000]
                                       [--quick] [--threads]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
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

from tessel.demo import synthetic, wsi

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


def loadavg() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


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


def import_folder(hi: Any, data: Path, source: Path, name: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """Import `source` into a new datastore; (datastore, [(image set, its frame ids)])."""
    ds = hi.create_datastore(datastoreName=name)["datastoreId"]
    began = time.perf_counter()
    job = hi.start_dicom_import_job(datastoreId=ds, dataAccessRoleArn=ROLE, inputS3Uri=source.as_uri() + "/",
                                    outputS3Uri=(data / "imports" / f"out-{name}").as_uri() + "/")
    while True:
        props = hi.get_dicom_import_job(datastoreId=ds, jobId=job["jobId"])["jobProperties"]
        if props["jobStatus"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.5)
    print(f"{name}: imported in {time.perf_counter() - began:.1f} s ({props['jobStatus']})", flush=True)
    result = Path(urllib.parse.unquote(props["outputS3Uri"].removeprefix("file://")))
    sets = []
    for entry in json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]:
        doc = json.loads(gzip.decompress(hi.get_image_set_metadata(
            datastoreId=ds, imageSetId=entry["imageSetId"])["imageSetMetadataBlob"].read()))
        frames = [f["ID"] for s in doc["Study"]["Series"].values() for i in s["Instances"].values()
                  for f in i["ImageFrames"]]
        sets.append((entry["imageSetId"], frames))
    return ds, sets


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (f"p50 {p(0.50):6.2f} ms  p90 {p(0.90):6.2f} ms  p99 {p(0.99):6.2f} ms  "
            f"mean {statistics.fmean(ordered) * 1000:6.2f} ms  (n={len(ordered)})")


def _frame_client(url: str, ds: str, targets: list[tuple[str, str]], count: int, seed: int,
                  start: Any, out: Any) -> None:
    """One client: warm up, wait for the start signal, time `count` GetImageFrame calls."""
    rng, hi = random.Random(seed), client(url)

    def call() -> int:
        image_set, frame = rng.choice(targets)
        body = hi.get_image_frame(datastoreId=ds, imageSetId=image_set,
                                  imageFrameInformation={"imageFrameId": frame})["imageFrameBlob"]
        return len(body.read())

    for _ in range(10):
        call()
    start.wait()
    latencies, sizes = [], []
    for _ in range(count):
        began = time.perf_counter()
        sizes.append(call())
        latencies.append(time.perf_counter() - began)
    out.put((latencies, sizes))


def _raw_client(url: str, ds: str, targets: list[tuple[str, str]], count: int, seed: int,
                start: Any, out: Any) -> None:
    """A minimal client: requests signed up front by botocore's signer (valid for 15 minutes), sent
    with http.client on one keep-alive connection. What is left of the latency is the server's."""
    import http.client
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    rng = random.Random(seed)
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "medical-imaging", "us-east-1")
    prepared = []
    for image_set, frame in rng.sample(targets, min(len(targets), 200)):
        path = f"/datastore/{ds}/imageSet/{image_set}/getImageFrame"
        body = json.dumps({"imageFrameId": frame}).encode()
        request = AWSRequest(method="POST", url=url + path, data=body, headers={"Content-Type": "application/json"})
        signer.add_auth(request)
        prepared.append((path, body, dict(request.headers.items())))
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)

    def call() -> int:
        path, body, headers = rng.choice(prepared)
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, (response.status, data[:200])
        return len(data)

    for _ in range(10):
        call()
    start.wait()
    latencies, sizes = [], []
    for _ in range(count):
        began = time.perf_counter()
        sizes.append(call())
        latencies.append(time.perf_counter() - began)
    out.put((latencies, sizes))


def frame_run(url: str, ds: str, targets: list[tuple[str, str]], what: str, clients: int, requests: int,
              threads: bool, raw: bool = False) -> None:
    if threads:
        import queue
        start_t, out_t = threading.Event(), queue.Queue()  # type: ignore[var-annotated]
        workers: list[Any] = [threading.Thread(target=_raw_client if raw else _frame_client, args=(
            url, ds, targets, requests // clients, k, start_t, out_t)) for k in range(clients)]
        start, out = start_t, out_t
    else:
        context = multiprocessing.get_context("spawn")
        start, out = context.Event(), context.Queue()
        workers = [context.Process(target=_raw_client if raw else _frame_client,
                                   args=(url, ds, targets, requests // clients, k, start, out))
                   for k in range(clients)]
    for w in workers:
        w.start()
    time.sleep(2 + clients * 0.3)  # every client connected and warmed up
    before = loadavg()
    began = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - began
    for w in workers:
        w.join()
    every = [x for latencies, _ in results for x in latencies]
    sizes = [x for _, s in results for x in s]
    print(f"GetImageFrame {what:9} {clients:2d} {'raw' if raw else 'boto3'} client(s): {percentiles(every)}  "
          f"{len(every) / elapsed:6.0f} frames/s  ~{statistics.fmean(sizes) / 1024:.0f} KiB/frame  "
          f"[{before}]", flush=True)


def metadata_run(url: str, ds: str, image_set: str, instances: int, requests: int) -> None:
    hi = client(url)
    latencies, size = [], 0
    before = loadavg()
    for _ in range(requests):
        began = time.perf_counter()
        size = len(hi.get_image_set_metadata(datastoreId=ds, imageSetId=image_set)["imageSetMetadataBlob"].read())
        latencies.append(time.perf_counter() - began)
    print(f"GetImageSetMetadata ({instances} instances, {size / 1024:.0f} KiB gzip): {percentiles(latencies)}  "
          f"[{before}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--wsi", default="8192x6144", help="level-0 size of the slide (WIDTHxHEIGHT)")
    parser.add_argument("--requests", type=int, default=2000, help="GetImageFrame calls per run")
    parser.add_argument("--threads", action="store_true", help="clients as threads of this process")
    parser.add_argument("--quick", action="store_true", help="40 slices of 256x256, a 2048x1536 slide, 400 requests")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.size, args.wsi, args.requests = 40, 256, "2048x1536", 400
    width, height = (int(v) for v in args.wsi.split("x"))
    print(f"{os.cpu_count()} CPUs, {loadavg()} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="tessel-bench-ahi-") as tmp:
        data = Path(tmp) / "data"
        began = time.perf_counter()
        synthetic.write_ct_series(data / "imports" / "ct", slices=args.slices, size=args.size, seed=1)
        slide = wsi.write_wsi_pyramid(data / "imports" / "wsi", base_width=width, base_height=height, levels=4)
        print(f"wrote {args.slices} CT slices of {args.size}x{args.size} and a {width}x{height} slide "
              f"({len(slide)} levels) in {time.perf_counter() - began:.1f} s", flush=True)
        proc, url = start_server(data)
        try:
            hi = client(url)
            ct_ds, ct_sets = import_folder(hi, data, data / "imports" / "ct", "ct")
            wsi_ds, wsi_sets = import_folder(hi, data, data / "imports" / "wsi", "wsi")
            (ct_set, ct_frames), = ct_sets
            ct_targets = [(ct_set, f) for f in ct_frames]
            wsi_targets = [(image_set, f) for image_set, frames in wsi_sets for f in frames]
            print(f"CT image set: {len(ct_frames)} frames; slide: {len(wsi_targets)} tiles in "
                  f"{len(wsi_sets)} image set(s)", flush=True)
            for raw in (False, True):
                for clients in (1, 16):
                    frame_run(url, ct_ds, ct_targets, "CT", clients, args.requests, args.threads, raw)
                    frame_run(url, wsi_ds, wsi_targets, "WSI tile", clients, args.requests, args.threads, raw)
            metadata_run(url, ct_ds, ct_set, len(ct_frames), 50)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
