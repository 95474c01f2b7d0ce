"""The cost of encryption at rest and of the audit trail: GetImageFrame latency and import throughput.

Import throughput: the same synthetic CT series imported (StartDICOMImportJob's code path, in
this process with its worker pool) into a datastore made with encryption at rest off, then on,
alternating rounds. GetImageFrame latency: boto3 against two in-process servers on loopback,
one with the audit trail and one without (its middleware replaced by a pass-through), each
reading random frames of the plain and of the encrypted datastore, rounds interleaved so that
machine noise falls on every configuration alike. Target: each costs < 10 %.

    .venv/bin/python benchmarks/security.py [--slices 40] [--size 512] [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

import tessel.app as app_module
from tessel.config import Secret, Settings
from tessel.demo import synthetic
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import open_stores

KEY_ID, SECRET = "TSLBENCHSECURITY0001", "tessel-benchmark-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_rounds(data: Path, source: Path, rounds: int) -> tuple[dict[bool, list[float]], dict[bool, str]]:
    """files/s per round, for encryption off (False) and on (True); and one datastore id of each."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    datastores: dict[bool, str] = {}
    files = len(list(source.iterdir()))
    for n in range(rounds):
        for encrypted in (False, True):
            settings = Settings(data_dir=data, encryption_at_rest=encrypted, workers=2)
            stores = open_stores(settings)
            try:
                ds = create_datastore(stores, f"bench-{'enc' if encrypted else 'plain'}-{n}")
                job = jobs.start_import_job(stores, ds.id, source.as_uri() + "/", (data / "imports" / "out").as_uri())
                began = time.perf_counter()
                summary = jobs.run_import_job(stores, job.id)
                elapsed = time.perf_counter() - began
                assert summary.imported == files, summary
                rates[encrypted].append(files / elapsed)
                datastores.setdefault(encrypted, ds.id)
            finally:
                stores.close()
            print(f"  import round {n + 1} encryption {'on ' if encrypted else 'off'}: "
                  f"{rates[encrypted][-1]:.1f} files/s", flush=True)
    return rates, datastores


class _NoAudit:
    """The audit middleware's place, doing nothing: the 'without audit' server."""

    def __init__(self, app: Any, audit: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def serve_in_thread(settings: Settings, *, audit: bool) -> tuple[Any, str]:
    import uvicorn

    original = app_module.AuditMiddleware
    if not audit:
        app_module.AuditMiddleware = _NoAudit  # type: ignore[assignment, misc]
    try:
        app = app_module.create_app(settings.with_(dicom_port=free_port()))
    finally:
        app_module.AuditMiddleware = original  # type: ignore[misc]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not start")


def frames_of(hi: Any, datastore_id: str) -> list[tuple[str, str]]:
    import gzip
    import json

    out = []
    for summary in hi.search_image_sets(datastoreId=datastore_id)["imageSetsMetadataSummaries"]:
        doc = json.loads(gzip.decompress(hi.get_image_set_metadata(
            datastoreId=datastore_id, imageSetId=summary["imageSetId"])["imageSetMetadataBlob"].read()))
        for series in doc["Study"]["Series"].values():
            for instance in series["Instances"].values():
                out.extend((summary["imageSetId"], f["ID"]) for f in instance["ImageFrames"])
    return out


SIZES: list[int] = []


def time_frames(hi: Any, datastore_id: str, frames: list[tuple[str, str]], count: int) -> list[float]:
    rng = random.Random(7)
    samples = []
    for _ in range(count):
        image_set_id, frame_id = rng.choice(frames)
        began = time.perf_counter()
        body = hi.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                  imageFrameInformation={"imageFrameId": frame_id})["imageFrameBlob"].read()
        samples.append((time.perf_counter() - began) * 1000)
        SIZES.append(len(body))
    return samples


def component_costs(data: Path, datastore_id: str, frame_id: str) -> None:
    """CPU cost of the two additions on one request, measured alone (robust to a busy machine)."""
    import asyncio

    from tessel.audit import AuditLog
    from tessel.audit.http import AuditMiddleware
    from tessel.blobs import keys
    from tessel.crypto import AUDIT_CHAIN

    stores = open_stores(Settings(data_dir=data))
    try:
        key = keys.frame(datastore_id, frame_id)
        inner = stores.blobs.inner  # type: ignore[attr-defined]
        stores.blobs.get(key)

        def best(fn: Any, n: int = 300) -> float:
            times = []
            for _ in range(n):
                began = time.perf_counter()
                fn()
                times.append(time.perf_counter() - began)
            return statistics.median(times) * 1e6

        read_us = best(lambda: inner.get(key))
        both_us = best(lambda: stores.blobs.get(key))
        print(f"  frame blob read {read_us:.0f} us; read + AES-256-GCM decrypt {both_us:.0f} us "
              f"(decrypt {both_us - read_us:.0f} us for {len(inner.get(key)) // 1024} KB)")
        assert stores.crypto is not None
        log = AuditLog(stores.catalog, stores.crypto.secret(AUDIT_CHAIN, always=True))

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x" * 1000})

        async def noop(message: Any) -> None:
            return None

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/datastore/x/imageSet/y/getImageFrame", "headers": [],
                 "client": ("127.0.0.1", 1), "path_params": {}}
        audited = AuditMiddleware(app, log)
        loop = asyncio.new_event_loop()
        plain_us = best(lambda: loop.run_until_complete(app(dict(scope), receive, noop)), 2000)
        audit_us = best(lambda: loop.run_until_complete(audited(dict(scope), receive, noop)), 2000)
        began = time.perf_counter()
        log.stop()  # the writer's batch work, off the request path
        per_record = (time.perf_counter() - began) / max(1, log.written) * 1e6
        print(f"  audit middleware + queue per request {audit_us - plain_us:.0f} us on the request path; "
              f"writing {log.written} records off the path: {per_record:.0f} us each")
    finally:
        stores.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--requests", type=int, default=300, help="GetImageFrame calls per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("TESSEL_DATA_DIR", None)
    print(f"load average before: {open('/proc/loadavg').read().strip()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tessel-bench-security-") as tmp:
        data = Path(tmp) / "data"
        source = data / "imports" / "ct"
        synthetic.write_ct_series(source, slices=args.slices, size=args.size, seed=1)
        print(f"import: {args.slices} CT slices of {args.size}x{args.size}, {args.rounds} round(s) each way", flush=True)
        rates, datastores = import_rounds(data, source, args.rounds)

        base = Settings(data_dir=data, access_key_id=KEY_ID, secret_access_key=Secret(SECRET), workers=1)
        servers = {audit: serve_in_thread(base, audit=audit) for audit in (False, True)}
        clients = {audit: boto3.client("medical-imaging", endpoint_url=url, region_name="us-east-1",
                                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                                       config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))
                   for audit, (_, url) in servers.items()}
        frames = {enc: frames_of(clients[True], ds) for enc, ds in datastores.items()}
        samples: dict[tuple[bool, bool], list[float]] = {}
        for n in range(args.rounds):
            for audit in (False, True):
                for encrypted in (False, True):
                    hi = clients[audit]
                    time_frames(hi, datastores[encrypted], frames[encrypted], 20)  # warm-up
                    got = time_frames(hi, datastores[encrypted], frames[encrypted], args.requests)
                    samples.setdefault((audit, encrypted), []).extend(got)
            print(f"  frame round {n + 1} done", flush=True)
        for server, _ in servers.values():
            server.should_exit = True
        time.sleep(1.0)
        print("\ncomponent costs (medians, this process alone):")
        component_costs(data, datastores[True], frames[True][0][1])

    def summary(values: list[float]) -> str:
        qs = statistics.quantiles(values, n=100)
        return f"mean {statistics.fmean(values):6.2f} ms  p50 {qs[49]:6.2f} ms  p99 {qs[98]:6.2f} ms"

    print(f"\nGetImageFrame (boto3, loopback, sequential; frames {statistics.median(SIZES) / 1024:.0f} KB HTJ2K median)")
    base_mean = statistics.fmean(samples[(False, False)])
    for (audit, encrypted), values in sorted(samples.items()):
        change = (statistics.fmean(values) / base_mean - 1) * 100
        print(f"  audit {'on ' if audit else 'off'} encryption {'on ' if encrypted else 'off'}: {summary(values)}"
              f"  ({change:+.1f} % vs neither)")
    plain, enc = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\nimport throughput (median of {args.rounds}): encryption off {plain:.1f} files/s, on {enc:.1f} files/s "
          f"({(enc / plain - 1) * 100:+.1f} %)")
    print(f"load average after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
