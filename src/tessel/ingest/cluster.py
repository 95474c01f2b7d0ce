"""Staging an import job's files on a Dask distributed cluster (TESSEL_DASK_SCHEDULER).

The job's pending files are cut into partitions, one Dask task each. A task runs on
a worker process, stages its files (frames and bulk data go to the blob store) and
records each outcome in the catalog itself, a few files at a time, and only while
the file is still `pending`. So:

- a worker that dies loses only the files it had not recorded yet; the scheduler
  reruns its task elsewhere, and the rerun skips files already recorded;
- a file recorded twice (a task rerun while its first run was still going) counts
  once, because the second update finds it no longer pending;
- if the scheduler dies, this coordinator stops with ClusterUnavailable, the job
  stays IN_PROGRESS, and the next run (any server's job runner) resumes from the
  catalog's rows.

Workers get what they need explicitly, in `WorkerConfig` (catalog URL, blob URL, S3
endpoint and credentials); they need tessel installed, nothing else. Assembly into
image-set versions stays with the coordinator (ingest.jobs), which reads the staged
records from the catalog.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tessel.catalog import Catalog
from tessel.catalog.models import ImportJob
from tessel.config import Secret, Settings
from tessel.ingest.jobs import CRASHED, ClusterUnavailable, failure, stage_one
from tessel.ingest.staging import StagingOptions
from tessel.stores import Stores, data_keys, encrypted_blobs

PARTITION_FILES = 32  # files per task at most: a lost task costs little, the scheduler is not flooded
PARTITION_BYTES = 256 * 1024 * 1024
FLUSH_FILES = 8  # a worker records outcomes in the catalog every few files...
FLUSH_SECONDS = 1.0  # ...or at least this often
POLL_SECONDS = 0.2
REPORT_SECONDS = 0.5
CONNECT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """The settings a worker needs, sent with each task (workers read no environment)."""

    catalog_url: str
    blob_url: str
    s3_endpoint_url: str | None
    s3_access_key_id: str | None
    s3_secret_access_key: Secret | None
    master_key_file: str  # wraps the data keys; workers on other hosts need it at the same path
    encryption_at_rest: bool
    master_key: Secret | None = None  # or the keys themselves (TESSEL_MASTER_KEY)

    @classmethod
    def of(cls, settings: Settings) -> "WorkerConfig":
        # Resolved URLs: an embedded catalog or file:// blobs are absolute paths that workers on
        # this host can use (workers on other hosts need PostgreSQL and S3).
        return cls(catalog_url=settings.resolved_catalog_url, blob_url=settings.resolved_blob_url,
                   s3_endpoint_url=settings.s3_endpoint_url, s3_access_key_id=settings.s3_access_key_id,
                   s3_secret_access_key=settings.s3_secret_access_key,
                   master_key_file=str(settings.resolved_master_key_file.resolve()),
                   encryption_at_rest=settings.encryption_at_rest, master_key=settings.master_key)

    def settings(self) -> Settings:
        return Settings(catalog_url=self.catalog_url, blob_url=self.blob_url, s3_endpoint_url=self.s3_endpoint_url,
                        s3_access_key_id=self.s3_access_key_id, s3_secret_access_key=self.s3_secret_access_key,
                        master_key_file=None if self.master_key else Path(self.master_key_file),
                        master_key=self.master_key, encryption_at_rest=self.encryption_at_rest)


# -- the worker side ------------------------------------------------------------------------------

_worker_stores: dict[WorkerConfig, Stores] = {}
_worker_s3: dict[WorkerConfig, Any] = {}


def _stores(config: WorkerConfig) -> Stores:
    """One set of stores per worker process and configuration (pooled connections, reused)."""
    stores = _worker_stores.get(config)
    if stores is None:
        settings = config.settings()
        catalog = Catalog.open(config.catalog_url, pool_size=2)
        blobs = encrypted_blobs(settings, data_keys(settings, catalog))  # as the server's own blobs
        stores = _worker_stores[config] = Stores(settings, catalog, blobs)
    return stores


def stage_partition(config: WorkerConfig, job_id: str, options: StagingOptions,
                    paths: Sequence[str]) -> int:
    """Stage the files of one partition that are still pending; returns how many this run recorded."""
    stores = _stores(config)
    pending = stores.catalog.pending_job_files(job_id, paths)

    def source_client() -> Any:
        if config not in _worker_s3:
            from tessel.blobs.s3 import s3_client

            _worker_s3[config] = s3_client(config.settings())
        return _worker_s3[config]

    recorded = 0
    updates: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    for path in paths:
        if path not in pending:
            continue  # recorded by an earlier run of this task
        updates.append(stage_one(path, stores.blobs, source_client, options))
        if len(updates) >= FLUSH_FILES or time.monotonic() - last_flush > FLUSH_SECONDS:
            recorded += stores.catalog.update_job_files(job_id, updates, only_from="pending")
            updates, last_flush = [], time.monotonic()
    if updates:
        recorded += stores.catalog.update_job_files(job_id, updates, only_from="pending")
    return recorded


# -- the coordinator side -------------------------------------------------------------------------

def partitions(files: Sequence[tuple[str, int]], *, max_files: int | None = None,
               max_bytes: int | None = None) -> list[list[str]]:
    """Consecutive runs of files, each at most max_files files and (unless one file) max_bytes."""
    max_files, max_bytes = max_files or PARTITION_FILES, max_bytes or PARTITION_BYTES
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path, nbytes in files:
        if current and (len(current) >= max_files or size + nbytes > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(path)
        size += nbytes
    if current:
        out.append(current)
    return out


def stage_pending(stores: Stores, job: ImportJob, options: StagingOptions, report: Callable[[], None],
                  check: Callable[[], None]) -> None:
    """Stage the job's pending files on the cluster; returns when none is pending."""
    from distributed import Client, KilledWorker

    address = stores.settings.dask_scheduler
    config = WorkerConfig.of(stores.settings)
    report()
    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(f"the Dask scheduler at {address} is unreachable: {exc}") from None
    try:
        crashed: set[str] = set()  # files alone in a task that still killed its workers
        while True:
            pending = [(r.path, r.size) for r in stores.catalog.job_files(job.id, "pending")]
            if not pending:
                break
            # A partition that killed its workers is retried one file per task, to find the culprit.
            suspects = {p for p, _ in pending if p in crashed}
            parts = partitions([f for f in pending if f[0] not in suspects]) + [[p] for p in sorted(suspects)]
            round_ = secrets.token_hex(4)
            futures = {client.submit(stage_partition, config, job.id, options, part, pure=False,
                                     key=f"tessel-stage-{job.id}-{round_}-{i}"): part
                       for i, part in enumerate(parts)}
            remaining = set(futures)
            reported = time.monotonic()
            while remaining:
                done = {f for f in remaining if f.done()}
                remaining -= done
                if time.monotonic() - reported > REPORT_SECONDS:  # workers record as they go
                    check()
                    report()
                    reported = time.monotonic()
                if not done:
                    if client.status not in ("running", "connecting"):
                        raise ClusterUnavailable(f"lost the Dask scheduler at {address}")
                    time.sleep(POLL_SECONDS)
                for future in done:
                    part = futures[future]
                    try:
                        future.result()
                    except KilledWorker:
                        # Dask reran it on other workers and each died: a file crashes the decoder.
                        if len(part) == 1:
                            stores.catalog.update_job_files(job.id, [failure(part[0], "ValidationException",
                                                                             CRASHED)], only_from="pending")
                        crashed.update(part)
    except (OSError, TimeoutError, CancelledError) as exc:  # the scheduler went away (CommClosedError is
        # an OSError; its tasks are cancelled)
        raise ClusterUnavailable(f"lost the Dask scheduler at {address}: {exc or type(exc).__name__}") from None
    finally:
        _close(client)
    report()


def _close(client: Any) -> None:
    try:
        client.close(timeout=10)
    except (OSError, TimeoutError):
        pass  # the scheduler is gone already
