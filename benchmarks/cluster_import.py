"""Import throughput on a Dask cluster with 1, 2 and 4 worker processes (PostgreSQL catalog, S3 blobs).

Everything runs on this machine: a throwaway PostgreSQL cluster, moto's S3 server in a
process of its own, a Dask LocalCluster whose workers are separate processes (one
thread each), and the coordinator (`run_import_job`, as `tessel serve` runs it).
The input is a synthetic 512x512 CT series on local disk; every frame is re-encoded
to HTJ2K lossless and verified, as in production.

For each worker count it prints the staging rate (the part that spreads over workers),
the assembly time (the coordinator's commit of image-set versions), instances/s and
MB/s over the whole job, the CPU milliseconds per instance used by the worker processes, by
this process (coordinator and Dask scheduler) and by PostgreSQL, the WAL written and the S3
objects and bytes per instance, and the load average. On a shared machine
the wall-clock rates follow the load; the CPU figures do not, and they are what the model uses. docs/scaling.md turns the per-worker
rate into a model of a 100-node cluster.

    .venv/bin/python benchmarks/cluster_import.py [--slices 200] [--size 512] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.stack starts PostgreSQL

from tessel.config import Secret, Settings  # noqa: E402
from tessel.demo import synthetic  # noqa: E402
from tessel.ingest import jobs  # noqa: E402
from tessel.lifecycle.datastores import create_datastore  # noqa: E402
from tessel.stores import open_stores  # noqa: E402

KEY, SECRET = "bench", "bench-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(workers: int, folder: Path, work: Path, pg: Any, endpoint: str) -> dict[str, Any]:
    from distributed import LocalCluster

    files = sorted(p for p in folder.iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in files)
    database = pg.new_database("bench")
    settings = Settings(data_dir=work / "data", catalog_url=pg.url(database), blob_url=f"s3://bench-{workers}/blobs",
                        s3_endpoint_url=endpoint, s3_access_key_id=KEY, s3_secret_access_key=Secret(SECRET))
    from tessel.blobs.s3 import s3_client

    s3_client(settings).create_bucket(Bucket=f"bench-{workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=40) as cluster:
        settings = settings.with_(dask_scheduler=cluster.scheduler_address)
        stores = open_stores(settings)
        ds = create_datastore(stores, f"bench-{workers}")
        job = jobs.start_import_job(stores, ds.id, folder.as_uri(), (work / f"out-{workers}").as_uri())
        staged_at: list[float] = []

        def progress(p: jobs.JobProgress) -> None:
            if p.files_done == p.files_total and not staged_at:
                staged_at.append(time.perf_counter())

        # Warm the workers (imports, connections) outside the timing, as a running cluster is warm.
        cluster_warm(cluster.scheduler_address)
        cpu_before, own_before = workers_cpu(cluster.scheduler_address), time.process_time()
        pg_before, wal_before = postgres_cpu(pg.root), wal_position(stores)
        started = time.perf_counter()
        summary = jobs.run_import_job(stores, job.id, progress=progress)
        ended = time.perf_counter()
        worker_cpu = workers_cpu(cluster.scheduler_address) - cpu_before
        coordinator_cpu = time.process_time() - own_before
        pg_cpu = postgres_cpu(pg.root) - pg_before
        with stores.catalog.read() as conn:
            wal = conn.exec_driver_sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(w)s)", {"w": wal_before}).scalar()
        objects = [o for page in s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=f"bench-{workers}")
                   for o in page.get("Contents", [])]
        loadavg = Path("/proc/loadavg").read_text().split()[:3]
        stores.close()
    assert summary.failed == 0 and summary.imported == len(files), summary
    staging = (staged_at[0] if staged_at else ended) - started
    return {"workers": workers, "files": len(files), "MB": round(size / 1e6, 1),
            "staging_s": round(staging, 1), "staging_inst_per_s": round(len(files) / staging, 1),
            "per_worker_inst_per_s": round(len(files) / staging / workers, 1),
            "assembly_s": round(ended - started - staging, 1), "total_s": round(ended - started, 1),
            "inst_per_s": round(len(files) / (ended - started), 1), "MB_per_s": round(size / 1e6 / (ended - started), 1),
            # CPU time is what the load average does not distort: a worker process on a core of its
            # own stages 1000 / worker_cpu_ms_per_inst instances/s.
            "worker_cpu_ms_per_inst": round(worker_cpu * 1000 / len(files), 1),
            "coord_sched_cpu_ms_per_inst": round(coordinator_cpu * 1000 / len(files), 1),
            # what the shared services pay per instance: the limits of the 100-node model
            "pg_cpu_ms_per_inst": round(pg_cpu * 1000 / len(files), 1),
            "wal_KB_per_inst": round(float(wal) / 1024 / len(files), 1),
            "s3_objects_per_inst": round(len(objects) / len(files), 2),
            "s3_KB_per_inst": round(sum(o["Size"] for o in objects) / 1024 / len(files), 1),
            "loadavg": " ".join(loadavg)}


def postgres_cpu(root: Path) -> float:
    """CPU seconds used by the PostgreSQL cluster under `root`: the postmaster, its live children
    and (cutime/cstime) the children it has reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
    return total / tick


def wal_position(stores: Any) -> str:
    with stores.catalog.read() as conn:
        return str(conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar())


def workers_cpu(address: str) -> float:
    """CPU seconds the cluster's worker processes have used so far (user + system)."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return sum(client.run(time.process_time).values())


def cluster_warm(address: str) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.run(lambda: __import__("tessel.ingest.cluster"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    from tests.stack import postgres_cluster

    work = Path(tempfile.mkdtemp(prefix="tessel-cluster-bench-"))
    try:
        folder = work / "ct"
        synthetic.write_ct_series(folder, slices=args.slices, size=args.size, seed=1)
        with postgres_cluster() as pg, moto_server() as endpoint:
            results = [run(n, folder, work, pg, endpoint) for n in args.workers]
        cols = list(results[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in results:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
