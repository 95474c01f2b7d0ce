"""Import jobs: scan a source, stage every file on a process pool, assemble, write manifests.

Progress lives in the catalog (one row per file: pending -> staged | failed ->
committed), so a job killed at any point resumes where it stopped: staged
files are not processed again, and assembly is idempotent because an
identical instance changes nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tessel.blobs import BlobStore, open_blob_store
from tessel.blobs.s3 import S3Client, s3_client
from tessel.catalog.models import DatastoreStatus, ImportJob, JobId, JobStatus
from tessel.config import Settings
from tessel.errors import Conflict, InvalidInput, NotFound, TesselError, Unavailable
from tessel.forkserver import fork_server
from tessel.ingest.assemble import Placement, assemble
from tessel.ingest.locations import parse_location
from tessel.ingest.staging import StagingOptions, stage_file
from tessel.lifecycle.datastores import get_datastore, lossless_syntax
from tessel.stores import Stores, open_worker_blobs

log = logging.getLogger("tessel.jobs")

DEFAULT_ROLE_ARN = "arn:aws:iam::000000000000:role/tessel-import"
ASSEMBLY_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class JobProgress:
    files_total: int
    files_done: int
    files_failed: int
    bytes_total: int
    bytes_done: int


@dataclass(frozen=True, slots=True)
class JobSummary:
    job: ImportJob
    scanned: int
    imported: int
    failed: int
    image_sets: list[dict[str, Any]]
    output_uri: str


def job_output_uri(job: ImportJob) -> str:
    return job.output_uri.rstrip("/") + f"/{job.datastore_id}-DicomImport-{job.id}/"


def start_import_job(stores: Stores, datastore_id: str, input_uri: str, output_uri: str, *,
                     name: str | None = None, client_token: str | None = None,
                     data_access_role_arn: str = DEFAULT_ROLE_ARN,
                     import_configuration: str | None = None,
                     input_owner_account_id: str | None = None) -> ImportJob:
    ds = get_datastore(stores, datastore_id)
    if ds.status != DatastoreStatus.ACTIVE:
        raise Conflict(f"datastore {datastore_id} is {ds.status.value}, not ACTIVE")
    if client_token:
        existing = stores.catalog.find_job_by_token(datastore_id, client_token)
        if existing is not None:
            return existing
    job_id = secrets.token_hex(16)
    job = ImportJob(id=JobId(job_id), datastore_id=ds.id, name=name or f"import-{job_id[:8]}",
                    status=JobStatus.SUBMITTED, input_uri=input_uri, output_uri=output_uri,
                    data_access_role_arn=data_access_role_arn, client_token=client_token, message=None,
                    submitted_at=time.time(), ended_at=None, import_configuration=import_configuration,
                    input_owner_account_id=input_owner_account_id)
    with stores.catalog.write() as conn:
        stores.catalog.insert_job(conn, job)
    return job


def unfinished_jobs(stores: Stores) -> list[ImportJob]:
    return stores.catalog.list_jobs(statuses=[JobStatus.SUBMITTED.value, JobStatus.IN_PROGRESS.value],
                                    newest_first=False)


LEASE_SECONDS = 30.0  # a runner that stops renewing (killed, partitioned) loses its jobs after this


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "-"


def _dead_here(runner: str) -> bool:
    """Whether `runner` (host/boot/pid/nonce) is a process of this host and boot that no longer
    exists (a pid means something only on its host, and only until it reboots)."""
    host, boot, pid = (runner.split("/") + ["", ""])[:3]
    if host != socket.gethostname() or boot != _boot_id() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _JobLease:
    """One runner per job across every process sharing the catalog: a lease in the job's row,
    renewed in the background. A job whose runner died is taken over at once when that
    runner was on this host (its pid is gone), else when its lease runs out."""

    def __init__(self, stores: Stores, job_id: str, ttl: float = LEASE_SECONDS) -> None:
        # host/boot/pid (as _dead_here reads it), then a nonce: two threads of one process are two runners
        runner = f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}/{secrets.token_hex(4)}"
        self.catalog, self.job_id, self.ttl, self.runner = stores.catalog, job_id, ttl, runner
        if not self.catalog.claim_job(job_id, self.runner, ttl):
            holder = self.catalog.job_runner(job_id)
            if not (holder and _dead_here(holder) and self.catalog.claim_job(job_id, self.runner, ttl,
                                                                             take_over=holder)):
                raise Conflict(f"import job {job_id} is being run by another process ({holder})")
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"tessel-lease-{job_id[:8]}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.catalog.renew_job_lease(self.job_id, self.runner, self.ttl):
                    self.lost.set()
                    return
            except Exception:  # the catalog is briefly unreachable: try again next round
                log.warning("could not renew the lease of import job %s", self.job_id, exc_info=True)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"import job {self.job_id} was taken over by another process")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost.is_set():
            self.catalog.release_job(self.job_id, self.runner)


class LeaseLost(Conflict):
    """This process stopped renewing a job's lease in time and another took the job over."""


class ClusterUnavailable(Unavailable):
    """The Dask scheduler cannot be reached: the job stays IN_PROGRESS and resumes later."""


def run_import_job(stores: Stores, job_id: str, *,
                   progress: Callable[[JobProgress], None] | None = None) -> JobSummary:
    job = stores.catalog.job_by_id(job_id)
    if job is None:
        raise NotFound(f"import job {job_id} does not exist")
    lease = _JobLease(stores, job_id)
    try:
        stores.catalog.set_job_status(job.id, JobStatus.IN_PROGRESS)
        try:
            summary = _run(stores, job, progress, lease)
        except (ClusterUnavailable, LeaseLost):
            raise  # not the job's fault: it stays IN_PROGRESS and resumes
        except TesselError as exc:
            stores.catalog.set_job_status(job.id, JobStatus.FAILED, message=exc.message, ended_at=time.time())
            raise
        lease.check()
        stores.catalog.set_job_status(job.id, JobStatus.COMPLETED, ended_at=time.time())
        return summary
    finally:
        lease.release()


def _run(stores: Stores, job: ImportJob, progress: Callable[[JobProgress], None] | None,
         lease: _JobLease) -> JobSummary:
    if not stores.settings.dask_scheduler:
        fork_server()  # its imports take a second or two: let them run while the source is scanned
    source = parse_location(job.input_uri, stores.settings)
    if not source.exists():
        raise InvalidInput(f"input {job.input_uri} does not exist")
    if not stores.catalog.job_files(job.id, limit=1):
        stores.catalog.add_job_files(job.id, source.files())
    ds = get_datastore(stores, job.datastore_id)
    options = StagingOptions(datastore_id=ds.id, lossless_format=lossless_syntax(ds.lossless_storage_format),
                             frame_threads=stores.settings.resolved_workers)
    if stores.settings.dask_scheduler:
        from tessel.ingest import cluster

        cluster.stage_pending(stores, job, options, _reporter(stores, job, progress), lease.check)
    else:
        _stage_pending(stores, job, options, _reporter(stores, job, progress), lease.check)
    lease.check()
    _assemble_staged(stores, job, lease.check)
    return _write_manifests(stores, job)


def _reporter(stores: Stores, job: ImportJob,
              progress: Callable[[JobProgress], None] | None) -> Callable[[], None]:
    """Report the job's progress as its rows in the catalog show it."""

    def report() -> None:
        if progress is None:
            return
        counts = stores.catalog.job_file_counts(job.id)
        total_files = sum(n for n, _ in counts.values())
        total_bytes = sum(b for _, b in counts.values())
        pending_files, pending_bytes = counts.get("pending", (0, 0))
        progress(JobProgress(total_files, total_files - pending_files, counts.get("failed", (0, 0))[0],
                             total_bytes, total_bytes - pending_bytes))

    return report


# -- staging one file (a worker of the local pool or of a Dask cluster) ---------------------------

def stage_one(path: str, blobs: BlobStore, source_client: Callable[[], S3Client],
              options: StagingOptions) -> dict[str, Any]:
    """Stage one file; the job_files update that records the outcome (staged record or failure)."""
    try:
        if path.startswith("s3://"):
            from tessel.ingest.s3 import stage_object

            staged = stage_object(path, source_client(), blobs, options)
        else:
            staged = stage_file(path, blobs, options)
        return {"path": path, "status": "staged", "record": gzip.compress(json.dumps(staged).encode(), 3)}
    except (InvalidInput, NotFound) as exc:  # NotFound: deleted between the scan and its staging
        return failure(path, "ValidationException", exc.message)
    except RecursionError:
        return failure(path, "ValidationException", "data set nesting is too deep to parse")
    except MemoryError:
        return failure(path, "ValidationException", "the file declares more data than can be processed")
    except Exception as exc:  # one bad file must not stop the job: report it as a server error
        return failure(path, "InternalServerException",
                       f"unexpected {type(exc).__name__} while processing the file: {exc}")


def failure(path: str, exception_type: str, message: str) -> dict[str, Any]:
    return {"path": path, "status": "failed",
            "message": json.dumps({"exceptionType": exception_type, "message": message})}


CRASHED = "the file crashed the decoder; it was not stored"


# -- staging on the local process pool ----------------------------------------------------------

_worker_blobs: BlobStore | None = None
_worker_settings: Settings | None = None
_worker_s3: S3Client | None = None


def _worker_init(blob_url: str, settings: Settings | None = None) -> None:
    # Settings travel to the worker (S3 endpoint and credentials); clients cannot be pickled.
    global _worker_blobs, _worker_settings, _worker_s3
    _worker_settings, _worker_s3 = settings, None
    # Blobs are encrypted with the datastore's data key (the worker reads it from the catalog);
    # frames are written without an fsync each: `_record` syncs the store once per batch.
    _worker_blobs = (open_worker_blobs(settings, fsync=False) if settings is not None
                     else open_blob_store(blob_url, settings, fsync=False))


def _source_client() -> S3Client:
    global _worker_s3
    if _worker_s3 is None:  # one pooled client per worker, made on its first s3:// source
        _worker_s3 = s3_client(_worker_settings)
    return _worker_s3


def _stage_task(paths: list[str], options: StagingOptions) -> list[dict[str, Any]]:
    assert _worker_blobs is not None
    return [stage_one(path, _worker_blobs, _source_client, options) for path in paths]


def _pool(stores: Stores) -> cf.Executor:
    workers = stores.settings.resolved_workers
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=fork_server(), initializer=_worker_init,
                                  initargs=(stores.settings.resolved_blob_url, stores.settings))


# A task is a few files, so each call the pool queues for a worker holds tens of milliseconds
# of work: the pool queues only one call more than it has workers, and with one small file
# per call a worker waited whenever the job's main thread was busy recording (blob sync,
# catalog commit). A large file goes alone. In flight: a few tasks per worker (paths only;
# the files are read by the workers), so memory does not grow with the job.
TASK_FILES = 8
TASK_BYTES = 32 << 20
TASKS_PER_WORKER = 4


def _next_task(queue: list[tuple[str, int]], attempts: dict[str, int], files: int) -> list[tuple[str, int]]:
    """Take the next task from the end of `queue`. A file being retried after a worker died
    goes alone, so a file that kills its worker is told apart from those it took along."""
    task = [queue.pop()]
    if attempts.get(task[0][0]):
        return task
    size = task[0][1]
    while queue and len(task) < files and not attempts.get(queue[-1][0]) and size + queue[-1][1] <= TASK_BYTES:
        size += queue[-1][1]
        task.append(queue.pop())
    return task


def _stage_pending(stores: Stores, job: ImportJob, options: StagingOptions, report: Callable[[], None],
                   check: Callable[[], None]) -> None:
    pending = [(r.path, r.size) for r in stores.catalog.job_files(job.id, "pending")]
    report()
    if not pending:
        return
    workers = stores.settings.resolved_workers
    limit = workers * TASKS_PER_WORKER
    attempts: dict[str, int] = {}
    queue = list(reversed(pending))
    updates: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    while queue:
        executor = _pool(stores)
        in_flight: dict[cf.Future[list[dict[str, Any]]], list[tuple[str, int]]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    retried = attempts.get(queue[-1][0], 0) > 0
                    if retried and in_flight:
                        break  # a file retried after a worker died runs alone: if one dies again, it is the cause
                    # No task takes more than its share of what is left: a small job still
                    # spreads over every worker, and the last tasks of a job are short ones.
                    task = _next_task(queue, attempts, max(1, min(TASK_FILES, len(queue) // limit)))
                    try:
                        future = executor.submit(_stage_task, [path for path, _ in task], options)
                    except cf.process.BrokenProcessPool:
                        queue.extend(reversed(task))  # never started (a worker died meanwhile): back in line
                        raise
                    in_flight[future] = task
                    if retried:
                        break
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    updates.extend(future.result())
                    in_flight.pop(future)
                if updates and (time.monotonic() - last_flush > 0.5 or len(updates) >= 64 or not in_flight):
                    check()
                    _record(stores, job, updates)
                    updates, last_flush = [], time.monotonic()
                    report()
        except cf.process.BrokenProcessPool:
            # A worker died (a decoder crashed on some file). Retry what was in flight, one file
            # at a time; a file that kills a worker twice is reported as failed, the rest goes on.
            for task in in_flight.values():
                for path, size in task:
                    attempts[path] = attempts.get(path, 0) + 1
                    if attempts[path] >= 2:
                        updates.append(failure(path, "ValidationException", CRASHED))
                    else:
                        queue.append((path, size))
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if updates:
        _record(stores, job, updates)
    report()


def _record(stores: Stores, job: ImportJob, updates: list[dict[str, Any]]) -> None:
    """Record staged and failed files; the blobs a staged file names are made durable first."""
    if any(u["status"] == "staged" for u in updates):
        stores.blobs.sync()
    stores.catalog.update_job_files(job.id, updates, only_from="pending")


# -- assembly and manifests -----------------------------------------------------------------------

def _assemble_staged(stores: Stores, job: ImportJob, check: Callable[[], None]) -> None:
    while True:
        check()
        rows = stores.catalog.job_files(job.id, "staged", with_record=True, limit=ASSEMBLY_CHUNK)
        if not rows:
            return
        staged = [json.loads(gzip.decompress(r.record)) for r in rows]
        placements = assemble(stores.catalog, stores.blobs, job.datastore_id, staged)
        stores.catalog.update_job_files(job.id, [
            {"path": r.path, "status": "committed", "record": None, "image_set_id": p.image_set_id,
             "message": json.dumps(_success(p, s))}
            for r, p, s in zip(rows, placements, staged)])


def _success(placement: Placement, staged: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"imageSetId": placement.image_set_id, "imageSetVersion": placement.version,
                              "isPrimary": placement.is_primary}
    if staged["warnings"]:
        result["warnings"] = staged["warnings"]
    return result


def _ndjson(lines: Iterator[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def _input_file(path: str) -> str:
    # AHI manifests name an S3 source by its object key (prefix included), not by its URI.
    return path[len("s3://"):].partition("/")[2] if path.startswith("s3://") else path


def _write_manifests(stores: Stores, job: ImportJob) -> JobSummary:
    rows = stores.catalog.job_files(job.id)
    success, warning, failure = [], [], []
    image_sets: dict[str, dict[str, Any]] = {}
    server_errors = 0
    for r in rows:
        info = json.loads(r.message) if r.message else {}
        if r.status == "committed":
            entry = {"inputFile": _input_file(r.path), "importResponse": {
                "imageSetId": info["imageSetId"], "isPrimary": info["isPrimary"]}}
            success.append(entry)
            if info.get("warnings"):
                warning.append({"inputFile": _input_file(r.path), "importResponse": info})
            summary = image_sets.setdefault(info["imageSetId"], {
                "imageSetId": info["imageSetId"], "imageSetVersion": info["imageSetVersion"],
                "isPrimary": info["isPrimary"], "numberOfMatchedSOPInstances": 0})
            summary["numberOfMatchedSOPInstances"] += 1
            summary["imageSetVersion"] = max(summary["imageSetVersion"], info["imageSetVersion"])
        elif r.status == "failed":
            failure.append({"inputFile": _input_file(r.path), "exception": info})
            server_errors += info.get("exceptionType") == "InternalServerException"
    out_uri = job_output_uri(job)
    out = parse_location(out_uri, stores.settings)
    out.write_bytes("SUCCESS/success.ndjson", _ndjson(iter(success)))
    out.write_bytes("FAILURE/failure.ndjson", _ndjson(iter(failure)))
    out.write_bytes("WARNING/warning.ndjson", _ndjson(iter(warning)))
    manifest = {"jobSummary": {
        "jobId": job.id, "datastoreId": job.datastore_id, "inputS3Uri": job.input_uri,
        "outputS3Uri": out_uri, "successOutputS3Uri": out_uri + "SUCCESS/",
        "failureOutputS3Uri": out_uri + "FAILURE/", "warningsOutputS3Uri": out_uri + "WARNING/",
        "numberOfScannedFiles": len(rows), "numberOfImportedFiles": len(success),
        "numberOfFilesWithCustomerError": len(failure) - server_errors,
        "numberOfFilesWithServerError": server_errors,
        "numberOfGeneratedImageSets": len(image_sets),
        "imageSetsSummary": list(image_sets.values())}}
    out.write_bytes("job-output-manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return JobSummary(job=job, scanned=len(rows), imported=len(success), failed=len(failure),
                      image_sets=list(image_sets.values()), output_uri=out_uri)
