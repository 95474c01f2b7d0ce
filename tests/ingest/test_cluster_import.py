"""Import jobs on a Dask cluster (PostgreSQL catalog, S3 blobs): workers and schedulers that die lose nothing."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tessel.catalog.models import JobStatus
from tessel.ingest import cluster, jobs
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores
from tests.factory import make_series
from tests.stack import Stack


@pytest.fixture
def stores(scaleout: Stack, tmp_path: Path) -> Any:
    s = open_stores(scaleout.settings(tmp_path / "data", workers=2))
    yield s
    s.close()


def _success_lines(out: Path, stores: Stores, job: Any) -> list[dict[str, Any]]:
    manifest = Path(jobs.job_output_uri(job)[len("file://"):]) / "SUCCESS" / "success.ndjson"
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_partitions_respect_file_and_byte_limits() -> None:
    files = [(f"f{i}", 10) for i in range(7)] + [("big", 1000), ("g", 10)]
    assert cluster.partitions(files, max_files=3, max_bytes=100) == [
        ["f0", "f1", "f2"], ["f3", "f4", "f5"], ["f6"], ["big"], ["g"]]


def test_a_worker_killed_mid_import_loses_nothing_and_counts_each_file_once(
        scaleout: Stack, stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client

    assert scaleout.dask is not None
    # Many small tasks and frequent progress reports: the job is still running when we look.
    monkeypatch.setattr(cluster, "PARTITION_FILES", 4)
    monkeypatch.setattr(cluster, "REPORT_SECONDS", 0.05)
    ds = create_datastore(stores, "t")
    files = make_series(tmp_path / "in", 80, rows=64, columns=64)
    job = jobs.start_import_job(stores, ds.id, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri())
    killed: list[tuple[int, int]] = []  # (pid, files done when it was killed)

    with Client(scaleout.dask.scheduler_address, timeout=30) as client:
        pids = scaleout.dask.worker_pids()

        def kill_a_busy_worker(progress: jobs.JobProgress) -> None:
            if killed or progress.files_done >= progress.files_total:
                return
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append((pids[busy[0]], progress.files_done))

        summary = jobs.run_import_job(stores, job.id, progress=kill_a_busy_worker)
        client.wait_for_workers(2, timeout=300)  # its nanny restarts it, for the tests after this one

    assert killed, "no worker was busy while the job ran: nothing was killed"
    assert killed[0][1] < len(files)
    assert (summary.scanned, summary.imported, summary.failed) == (80, 80, 0)
    assert stores.catalog.job_by_id(job.id).status == JobStatus.COMPLETED  # type: ignore[union-attr]
    lines = _success_lines(tmp_path / "out", stores, job)
    assert sorted(line["inputFile"] for line in lines) == sorted(str(f) for f in files)  # each exactly once
    (image_set,) = summary.image_sets
    assert image_set["numberOfMatchedSOPInstances"] == 80
    got = stores.catalog.get_image_set(ds.id, image_set["imageSetId"])
    assert got is not None and got.number_of_instances == 80 and got.latest_version >= 1


def test_a_job_whose_scheduler_is_unreachable_stays_in_progress_and_resumes(
        scaleout: Stack, stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = create_datastore(stores, "t")
    make_series(tmp_path / "in", 6)
    job = jobs.start_import_job(stores, ds.id, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri())
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1.0)
    with socket_closed() as address:
        down = Stores(stores.settings.with_(dask_scheduler=address), stores.catalog, stores.blobs)
        with pytest.raises(jobs.ClusterUnavailable, match="unreachable"):
            jobs.run_import_job(down, job.id)
    after = stores.catalog.job_by_id(job.id)
    assert after is not None and after.status == JobStatus.IN_PROGRESS
    assert stores.catalog.job_runner(job.id) is None  # the lease was given back: anyone may resume it
    summary = jobs.run_import_job(stores, job.id)
    assert (summary.scanned, summary.imported) == (6, 6)


class socket_closed:
    """A tcp:// address where nothing listens (bound, then closed)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None
