"""A SIGKILL in the middle of an import job loses nothing and duplicates nothing on resume."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import sqlalchemy as sa

from tessel import retrieve
from tessel.blobs import keys
from tessel.catalog.sql.tables import frames, image_sets, import_job_files, instances
from tessel.config import Settings
from tessel.stores import open_stores
from tests.cli.test_serve import free_port
from tests.factory import make_series

FILES = 240


def tessel(*args: str) -> list[str]:
    return [sys.executable, "-m", "tessel.cli.main", *args]


def kill_import_midway(source: Path, data: Path) -> None:
    """Start `tessel import` and SIGKILL it once some files are staged and others still pending.

    The catalog is watched through a read-only SQLite connection: opening the stores here would
    create keys and run migrations beside the import's own (a race of the test, not the import)."""
    log = data.parent / "import-stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(tessel("import", str(source), "--data-dir", str(data), "--workers", "1"),
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        staged = pending = 0
        while time.monotonic() < deadline and proc.poll() is None:
            counts = _job_file_counts(data / "catalog.sqlite")
            staged, pending = counts.get("staged", 0), counts.get("pending", 0)
            if staged >= 8 and pending > 0:  # a task's worth staged (recorded), more to come
                break
            time.sleep(0.02)
    finally:
        exited = proc.poll()
        if exited is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert staged >= 8 and pending > 0, (
        f"the import was not caught midway: {staged} file(s) staged, {pending} pending, "
        f"exit status {exited}; its stderr ends: {log.read_bytes()[-2000:].decode(errors='replace')}")


def _job_file_counts(catalog: Path) -> dict[str, int]:
    """Import job files by status, read without writing anything (empty until the schema is there)."""
    if not catalog.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5)) as conn:
            return dict(conn.execute(f"SELECT status, count(*) FROM {import_job_files.name} GROUP BY status"))
    except sqlite3.OperationalError:  # the import is still creating its schema
        return {}


def assert_complete_and_exact(data: Path, files: int) -> None:
    stores = open_stores(Settings(data_dir=data))
    with stores.catalog.read() as conn:
        (image_set,) = conn.execute(sa.select(image_sets)).all()
        assert image_set.number_of_instances == files
        sops = conn.execute(sa.select(instances.c.sop_instance_uid)).scalars().all()
        assert len(sops) == len(set(sops)) == files
        frame_ids = conn.execute(sa.select(frames.c.frame_id)).scalars().all()
        assert len(frame_ids) == len(set(frame_ids)) == files
        statuses = conn.execute(sa.select(import_job_files.c.status)).scalars().all()
        assert set(statuses) == {"committed"}
    stored = set(stores.blobs.list(keys.datastore_prefix(image_set.datastore_id) + "frames/"))
    assert stored == {keys.frame(image_set.datastore_id, f) for f in frame_ids}
    # a write cut short by the kill can only leave an unlisted temp file, never a partial blob
    doc = retrieve.get_metadata(stores, image_set.datastore_id, image_set.id)
    (series,) = doc["Study"]["Series"].values()
    assert len(series["Instances"]) == files
    for node in series["Instances"].values():
        (frame,) = node["ImageFrames"]
        data_bytes = stores.blobs.get(keys.frame(image_set.datastore_id, frame["ID"]))
        pixels = retrieve.decode_stored_frame(data_bytes, node)
        assert zlib.crc32(pixels.tobytes()) == frame["PixelDataChecksumFromBaseToFullResolution"][-1]["Checksum"]
    stores.close()


def test_killed_import_resumes_without_duplicate_partial_or_lost_frames(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_series(tmp_path / "in", FILES, rows=384, columns=384)  # long enough to be killed midway
    kill_import_midway(tmp_path / "in", data)

    resumed = subprocess.run(tessel("import", str(tmp_path / "in"), "--data-dir", str(data), "--workers", "2"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming import job" in resumed.stderr
    assert_complete_and_exact(data, FILES)


def test_a_job_killed_mid_import_is_finished_by_the_next_server_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_series(tmp_path / "in", 240, rows=384, columns=384)  # long enough to be killed midway on a quiet machine
    kill_import_midway(tmp_path / "in", data)
    port = free_port()
    server = subprocess.Popen(tessel("serve", "--data-dir", str(data), "--port", str(port),
                                     "--dicom-port", str(free_port())),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stores = open_stores(Settings(data_dir=data))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert server.poll() is None, "the server exited"
            (job,) = stores.catalog.list_jobs()
            if job.status.value in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.2)
        stores.close()
        assert job.status.value == "COMPLETED", job.message
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert_complete_and_exact(data, 240)
