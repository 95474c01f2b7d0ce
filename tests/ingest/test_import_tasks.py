"""How an import job hands files to its worker processes: tasks of several files, and a
worker that dies mid-task costs a retry of its files, never a file."""

from __future__ import annotations

import os
import signal
import zlib
from pathlib import Path
from typing import Callable

import psutil
import pydicom

from tessel import retrieve
from tessel.ingest import jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores
from tests.factory import make_series


def test_a_task_takes_several_small_files_but_a_large_or_retried_file_alone() -> None:
    big = jobs.TASK_BYTES
    queue = list(reversed([("a", 10), ("b", 10), ("c", 10), ("d", big), ("e", 10), ("f", 10), ("g", 10)]))
    attempts = {"f": 1}
    tasks = []
    while queue:
        tasks.append([path for path, _ in jobs._next_task(queue, attempts, files=2)])
    # two at most; "d" does not fit beside "c"; "f" is retried after a worker died: alone
    assert tasks == [["a", "b"], ["c"], ["d"], ["e"], ["f"], ["g"]]


def _our_workers() -> list[psutil.Process]:
    found = []
    for server in psutil.Process().children():
        try:
            if any("multiprocessing.forkserver" in part for part in server.cmdline()):
                found.extend(server.children())
        except psutil.Error:
            continue
    return found


def _killing_workers(times: int, killed: list[int]) -> Callable[[jobs.JobProgress], None]:
    """A progress callback that SIGKILLs one staging worker at each report mid-job, `times` in all."""
    def kill_one(progress: jobs.JobProgress) -> None:
        if len(killed) >= times or not 0 < progress.files_done < progress.files_total:
            return
        for worker in _our_workers():
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
            return

    return kill_one


def test_a_worker_killed_mid_job_loses_no_file(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "t")
    # 160 files: the job records (and reports) after 64 while the rest is still to do
    files = make_series(tmp_path / "in", 160, rows=64, columns=64)
    job = jobs.start_import_job(stores, ds.id, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri())
    killed: list[int] = []
    summary = jobs.run_import_job(stores, job.id, progress=_killing_workers(1, killed))
    assert killed, "the job finished before a worker could be killed"
    assert (summary.imported, summary.failed) == (160, 0)
    (image_set,) = summary.image_sets
    doc = retrieve.get_metadata(stores, ds.id, image_set["imageSetId"])
    (series,) = doc["Study"]["Series"].values()
    assert len(series["Instances"]) == 160
    for path in files:
        source = pydicom.dcmread(path)
        node = series["Instances"][source.SOPInstanceUID]
        (frame,) = node["ImageFrames"]
        stored = retrieve.get_image_frame(stores, ds.id, image_set["imageSetId"], frame["ID"])
        assert zlib.crc32(retrieve.decode_stored_frame(stored.data, node).tobytes()) == \
            zlib.crc32(source.pixel_array.tobytes())


def test_after_a_worker_died_only_a_file_that_kills_one_again_is_failed(stores: Stores, tmp_path: Path) -> None:
    # Files retried after a crash run one at a time, so a second crash is blamed on one file,
    # not on every file that happened to be in flight with it.
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 160, rows=64, columns=64)
    job = jobs.start_import_job(stores, ds.id, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri())
    killed: list[int] = []
    summary = jobs.run_import_job(stores, job.id, progress=_killing_workers(2, killed))
    assert len(killed) == 2, "the job finished before two workers could be killed"
    assert summary.imported + summary.failed == 160
    assert summary.failed <= 1
    failures = (Path(summary.output_uri[7:]) / "FAILURE" / "failure.ndjson").read_text()
    assert failures.count(jobs.CRASHED) == summary.failed
