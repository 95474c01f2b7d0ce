"""Ingest benchmark: a synthetic 300-slice 512x512 CT and a whole-slide image of 20,000+ tiles.

Prints instances/s, MB/s, frames/s and peak RSS (this process and its worker
processes). Run on demand: `make bench` or `.venv/bin/python benchmarks/ingest.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tessel.config import Settings
from tessel.demo import synthetic
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import open_stores


class PeakRss:
    """Samples the RSS of this process plus its children (the worker pool) every 50 ms."""

    def __init__(self) -> None:
        self.peak_tree = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            procs = [me] + me.children(recursive=True)
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            self.peak_tree = max(self.peak_tree, sum(rss))
            self.peak_single = max(self.peak_single, max(rss, default=0))
            time.sleep(0.05)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(name: str, folder: Path, work: Path, workers: int) -> dict[str, float | str]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    data_dir = work / f"data-{name}"
    stores = open_stores(Settings(data_dir=data_dir, workers=workers))
    ds = create_datastore(stores, name)
    job = jobs.start_import_job(stores, ds.id, folder.as_uri(), (work / "out").as_uri())
    with PeakRss() as rss:
        started = time.perf_counter()
        summary = jobs.run_import_job(stores, job.id)
        elapsed = time.perf_counter() - started
    frames = 0
    with stores.catalog.read() as conn:
        frames = conn.exec_driver_sql("SELECT count(*) FROM frames").scalar_one()
    stores.close()
    shutil.rmtree(data_dir)
    assert summary.failed == 0, f"{summary.failed} files failed"
    return {"workload": name, "files": len(files), "input_MB": round(total / 1e6, 1),
            "seconds": round(elapsed, 2), "instances_per_s": round(len(files) / elapsed, 1),
            "MB_per_s": round(total / 1e6 / elapsed, 1), "frames_per_s": round(frames / elapsed, 1),
            "peak_rss_largest_process_MB": round(rss.peak_single / 1e6, 1),
            "peak_rss_all_processes_MB": round(rss.peak_tree / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small workloads for a smoke run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tessel-bench-"))
    try:
        slices, size = (30, 256) if args.quick else (300, 512)
        ct = work / "ct"
        synthetic.write_ct_series(ct, slices=slices, size=size, seed=1)
        wsi = work / "wsi"
        # 145 x 140 tiles of 256 at the base level = 20,300 tiles, plus the smaller levels
        width, height = (2048, 2048) if args.quick else (145 * 256, 140 * 256)
        synthetic.write_wsi_pyramid(wsi, base_width=width, base_height=height, tile=256,
                                    levels=3 if args.quick else 4, seed=2)
        results = [measure("ct", ct, work, args.workers), measure("wsi", wsi, work, args.workers)]
        cols = list(results[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in results:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
        print(f"(ru_maxrss of the largest finished worker: "
              f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
