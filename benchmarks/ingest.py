"""Ingest benchmark: figures for the import path on the embedded default (SQLite + files).

Workloads (each imported by a real import job: process pool, staging, assembly, manifests):
- ct:     a synthetic 300-slice 512x512 16-bit CT (Explicit VR LE), transcoded to HTJ2K
          with every frame decoded again and checked against the source CRC32; measured
          twice: cold (the process's first job, which starts the staging pool's fork
          server: ~1.5 s of imports before the first file) and ct-warm (the same files
          into a new datastore with the fork server running, as in a `tessel serve`
          after its first job);
- wsi:    a whole-slide pyramid whose base level has 20,300 JPEG tiles of 256x256
          (lossy: stored as it came, each tile decoded once for its checksum);
- wsi-2gb: ONE 2.2 GB native RGB whole-slide file of 11,024 256x256 tiles, transcoded to
          HTJ2K with the reversible colour transform: the memory bound on a file larger
          than the machine would want to hold.

Prints wall time, instances/s, MB/s of input, frames/s, the CPU time of every process
(main, fork server, workers) and how many cores that kept busy, and the peak memory: the
largest single RSS and the peak of the summed PSS (shared pages counted once) of the
whole process tree. The load average is printed at the start and end of each workload:
on a shared machine the wall-clock figures scale with it; CPU-seconds per MB do much less.

    .venv/bin/python benchmarks/ingest.py [--quick] [--only ct,wsi,wsi-2gb] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, VLWholeSlideMicroscopyImageStorage, generate_uid

from tessel.config import Settings
from tessel.demo import synthetic
from tessel.demo.slide import SlideTexture
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import open_stores


class ProcessTree:
    """Samples this process and its descendants: peak RSS / PSS, and CPU time per process."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_rss_single = 0
        self.peak_pss_total = 0
        self.cpu: dict[int, float] = {}  # pid -> user + system seconds since __enter__, last seen
        # Processes already running (a warm job's fork server and workers): only their CPU from now
        self._cpu_before: dict[int, float] = {}
        self.own_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        pss_total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    mem = proc.memory_full_info()
                    times = proc.cpu_times()
            except psutil.Error:
                continue
            self.peak_rss_single = max(self.peak_rss_single, mem.rss)
            pss_total += getattr(mem, "pss", mem.rss)
            self.cpu[proc.pid] = times.user + times.system - self._cpu_before.get(proc.pid, 0.0)
        self.peak_pss_total = max(self.peak_pss_total, pss_total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)
        self.own_cpu = time.thread_time()  # reading smaps is not free: not the import's cost

    def __enter__(self) -> "ProcessTree":
        self._base = psutil.Process().cpu_times()
        for proc in psutil.Process().children(recursive=True):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self._cpu_before[proc.pid] = times.user + times.system
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        now = psutil.Process().cpu_times()
        self.cpu[os.getpid()] = (now.user - self._base.user) + (now.system - self._base.system) - self.own_cpu

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(name: str, folder: Path, work: Path, workers: int) -> dict[str, Any]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    data_dir = work / f"data-{name}"
    stores = open_stores(Settings(data_dir=data_dir, workers=workers))
    ds = create_datastore(stores, name)
    job = jobs.start_import_job(stores, ds.id, folder.as_uri(), (work / "out").as_uri())
    load_before = load()
    with ProcessTree() as tree:
        started = time.perf_counter()
        summary = jobs.run_import_job(stores, job.id)
        elapsed = time.perf_counter() - started
    with stores.catalog.read() as conn:
        frames = conn.exec_driver_sql("SELECT count(*) FROM frames").scalar_one()
    stores.close()
    shutil.rmtree(data_dir)
    assert summary.failed == 0, f"{summary.failed} files failed"
    return {"workload": name, "files": len(files), "input_MB": round(total / 1e6, 1), "frames": frames,
            "seconds": round(elapsed, 2), "instances_per_s": round(len(files) / elapsed, 1),
            "MB_per_s": round(total / 1e6 / elapsed, 1), "frames_per_s": round(frames / elapsed, 1),
            "cpu_s": round(tree.cpu_seconds, 1), "cpu_main_s": round(tree.cpu[os.getpid()], 1),
            "cores_busy": round(tree.cpu_seconds / elapsed, 2),
            "MB_per_cpu_s": round(total / 1e6 / tree.cpu_seconds, 1),
            "peak_rss_largest_MB": round(tree.peak_rss_single / 1e6), "peak_pss_all_MB":
            round(tree.peak_pss_total / 1e6), "load_before": load_before, "load_after": load()}


def write_native_slide(path: Path, columns: int, rows: int, tile: int = 256, seed: int = 3) -> Path:
    """One TILED_FULL native RGB level, written tile by tile (never held in memory).

    64 distinct H&E tiles are rendered once and repeated with a per-tile brightness
    shift, so the encoder sees realistic texture and no two frames are identical.
    """
    texture = SlideTexture(width=8 * tile, height=8 * tile, tile=tile, rng=np.random.default_rng(seed))
    palette = [texture.tile_pixels(x * tile, y * tile) for y in range(8) for x in range(8)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed), "sop"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(seed), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(seed), "series"])
    ds.PatientID, ds.PatientName, ds.Modality = "BENCH-2GB", "Bench^Slide", "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = columns * tile, rows * tile
    ds.Rows = ds.Columns = tile
    ds.NumberOfFrames = columns * rows
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    frame_bytes = tile * tile * 3
    length = frame_bytes * columns * rows
    with open(path, "wb") as f:
        dcmwrite(f, ds, enforce_file_format=True)
        f.write(b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<L", length))
        for i in range(columns * rows):
            shift = np.uint8(i % 7)
            f.write((palette[i % 64] - np.minimum(palette[i % 64], shift)).tobytes())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workloads for a smoke run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", default="ct,wsi,wsi-2gb", help="comma-separated workloads to run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="tessel-bench-"))
    results = []
    try:
        if "ct" in only:
            slices, size = (30, 256) if args.quick else (300, 512)
            synthetic.write_ct_series(work / "ct", slices=slices, size=size, seed=1)
            results.append(measure("ct", work / "ct", work, args.workers))
            # The same files again into a new datastore: the job's fork server is running now (a
            # `tessel serve` keeps its own after its first job), so this is the steady rate.
            results.append(measure("ct-warm", work / "ct", work, args.workers))
            shutil.rmtree(work / "ct")
        if "wsi" in only:
            # 145 x 140 tiles of 256 at the base level = 20,300 tiles, plus the smaller levels
            width, height = (2048, 2048) if args.quick else (145 * 256, 140 * 256)
            synthetic.write_wsi_pyramid(work / "wsi", base_width=width, base_height=height, tile=256,
                                        levels=3 if args.quick else 4, seed=2)
            results.append(measure("wsi", work / "wsi", work, args.workers))
            shutil.rmtree(work / "wsi")
        if "wsi-2gb" in only:
            (work / "wsi-2gb").mkdir()
            columns, rows = (16, 16) if args.quick else (104, 106)  # 11,024 tiles: 2.17 GB
            write_native_slide(work / "wsi-2gb" / "level-0.dcm", columns, rows)
            results.append(measure("wsi-2gb", work / "wsi-2gb", work, args.workers))
        cols = list(results[0]) if results else []
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in results:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
