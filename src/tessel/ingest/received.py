"""Received instances answered before they are committed (C-STORE): check each instance, spool
it durably, answer; stage and commit in the background, through the server's ingest writer.

A C-STORE SCU waits for each response before it sends the next instance, so whatever runs
before the response sets the ingest rate. Only what decides the answer runs there:

1. parse and check the instance (`dicom.read_instance_bytes`: structure, identifiers, Pixel
   Data length) -- a bad instance is answered with a failure status naming the problem, and
   nothing is written;
2. append it to the association's spool segment and `fdatasync` it (spool.py): from here it
   survives a crash, and the C-STORE is answered Success (or a warning, for coerced elements).

Then, off the response path:

3. stage (ingest.staging: frames decoded, re-encoded to HTJ2K, checked by CRC32, written to
   the blob store, as import jobs do) in `workers` processes, which read the instance back
   from the spool (processes, not threads: a busy thread would hold the GIL against the
   association threads and slow every answer);
4. commit (one committer thread, through the server's ingest writer, which STOW-RS commits
   through too: ingest/writer.py): a datastore's staged instances are assembled into image-set
   versions together once none of its instances is still being staged and
   it has been idle for IDLE_SECONDS (at once after an association ends), or MAX_AGE_SECONDS
   after the oldest arrived, or at MAX_BATCH instances. A series sent on one association thus
   becomes one version, not one per instance. C-FIND, C-GET, C-MOVE and storage commitment
   wait for this first (`flush`), so DIMSE peers always see what they sent.

Instances are visible through the AHI API and DICOMweb once committed, usually a second or two
after the association ends; until then nothing of them is served, so no frame is ever read
half-transcoded.

Pixel data that arrived compressed is staged before the answer instead (step 3 moves up):
decoding a codestream can fail, and such an instance must get its failure status, as an import
job would reject it. Native pixel data cannot fail to decode once its length is checked; if
staging it fails anyway (a full disk, a bug), the instance is kept under `spool/failed/` with
the reason and logged, never dropped.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessel.blobs import BlobStore
from tessel.config import Settings
from tessel.dicom import read_instance_bytes
from tessel.dicom.models import ParsedInstance
from tessel.dicom.syntaxes import SYNTAXES
from tessel.ingest.spool import Kind, Segment, Spool, read_segment
from tessel.errors import NotFound, TesselError, Unavailable
from tessel.forkserver import fork_server
from tessel.ingest.staging import StagingOptions, stage_bytes, stage_parsed
from tessel.ingest.writer import writer_of
from tessel.lifecycle.datastores import get_datastore, lossless_syntax
from tessel.stores import Stores, open_worker_blobs

log = logging.getLogger("tessel.dimse")

IDLE_SECONDS = 0.5
MAX_AGE_SECONDS = 30.0
MAX_BATCH = 1000
RETRY_SECONDS = 2.0
MAX_BACKLOG_BYTES = 1 << 30  # received but not yet staged; C-STOREs wait beyond this
POOL_IDLE_SECONDS = 300.0  # staging processes end after this long without work


@dataclass(frozen=True, slots=True)
class Stored:
    """An instance that is durable (spooled) and will be committed."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    warnings: tuple[dict[str, Any], ...]
    study_instance_uid: str | None = None  # for the audit trail
    series_instance_uid: str | None = None


@dataclass(eq=False, slots=True)
class _Entry:
    seq: int
    datastore_id: str
    segment: Segment
    offset: int  # the spooled payload in the segment file
    length: int
    received_at: float
    name: str = "instance"  # SOP Instance UID, for logs
    staged: dict[str, Any] | None = None
    failed: bool = False  # set aside (spool/failed/): nothing to commit
    attempts: int = 0


@dataclass(slots=True)
class _Datastore:
    """One datastore's uncommitted entries, in arrival order."""

    entries: deque[_Entry] = field(default_factory=deque)
    options: StagingOptions | None = None
    last_at: float = 0.0
    urgent: bool = False
    failing_since: float | None = None


def staging_options(stores: Stores, datastore_id: str) -> StagingOptions:
    ds = get_datastore(stores, datastore_id)
    return StagingOptions(datastore_id=ds.id, lossless_format=lossless_syntax(ds.lossless_storage_format))


def _append(segment: Segment, kind: Kind, datastore_id: str, payload: bytes) -> int:
    try:
        return segment.append(kind, datastore_id, payload)
    except OSError as exc:  # answered A700 (out of resources): the sender may try again later
        raise Unavailable(f"cannot write the instance to disk: {exc.strerror or exc}") from None


def _staged_before_answer(parsed: ParsedInstance) -> bool:
    info = SYNTAXES.get(parsed.transfer_syntax_uid)
    return parsed.pixel is not None and bool(parsed.frames) and (info is None or info.encapsulated)


# -- the staging processes ---------------------------------------------------------------------

_worker_blobs: BlobStore | None = None


def _worker_init(settings: Settings) -> None:
    global _worker_blobs
    # Below the association threads: a C-STORE is answered once spooled, and what the sender
    # waits for must not queue behind transcoding that can catch up later.
    os.nice(5)
    # Encrypted as the server's own blobs; no sync per blob: the writer syncs before it commits.
    _worker_blobs = open_worker_blobs(settings, fsync=False)


def _stage_spooled(path: str, offset: int, length: int, options: StagingOptions) -> tuple[bool, Any]:
    """In a staging process: (True, staged instance) or (False, why it cannot be stored)."""
    assert _worker_blobs is not None
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return True, stage_bytes(data, _worker_blobs, options)
    except TesselError as exc:
        return False, exc.message
    except Exception as exc:  # reported to the parent, which keeps the instance aside with this reason
        return False, f"{type(exc).__name__}: {exc}"


class StoreQueue:
    """The spool, the staging processes and the committer thread of one DIMSE server."""

    def __init__(self, stores: Stores, spool: Spool, *, workers: int = 2, idle: float = IDLE_SECONDS,
                 max_age: float = MAX_AGE_SECONDS, max_batch: int = MAX_BATCH,
                 max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.stores, self.spool = stores, spool
        self.workers = max(1, workers)
        self.idle, self.max_age, self.max_batch = idle, max_age, max_batch
        self.max_backlog_bytes = max_backlog_bytes
        self._cond = threading.Condition()
        self._datastores: dict[str, _Datastore] = {}
        self._to_stage: queue.Queue[_Entry | None] = queue.Queue()
        self._in_flight = 0  # staging tasks submitted and not done
        self._pool: cf.ProcessPoolExecutor | None = None
        self._backlog_bytes = 0
        self._seq = 0
        self._stopping = False
        self._dispatcher: threading.Thread | None = None
        self._committer: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Take up what a previous run spooled but did not commit, then start the threads."""
        self._stopping = False
        recovered = sum(self._recover(path) for path in self.spool.leftovers())
        if recovered:
            log.info("committing %d DIMSE instance(s) received before the last stop", recovered)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="tessel-dimse-stage", daemon=True)
        self._committer = threading.Thread(target=self._commit_loop, name="tessel-dimse-commit", daemon=True)
        self._dispatcher.start()
        self._committer.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stage and commit what is queued (what does not finish in time stays spooled)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._to_stage.put(None)
        deadline = time.monotonic() + timeout
        for thread in (self._dispatcher, self._committer):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._dispatcher = self._committer = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _recover(self, path: Path) -> int:
        segment = Segment(path, sync=self.spool.sync)
        count = 0
        for record in read_segment(path):
            count += 1
            entry = self._enqueue(segment, record.datastore_id, record.offset, len(record.payload), recovered=True)
            if record.kind is Kind.STAGED:
                entry.staged = json.loads(record.payload)
            else:
                self._backlog_bytes += entry.length
                self._to_stage.put(entry)
        for d in self._datastores.values():
            d.urgent = True
        if segment.done:
            segment.delete()
        return count

    # -- the association side -----------------------------------------------------------------

    def open_segment(self) -> Segment:
        return self.spool.open()

    def store(self, segment: Segment, datastore_id: str, options: StagingOptions, data: bytes, *,
              expect_sop_instance_uid: str | None = None) -> Stored:
        """Check one Part 10 instance and spool it durably; raises TesselError saying why not."""
        parsed = read_instance_bytes(data, bulk_threshold=options.bulk_threshold)
        if expect_sop_instance_uid is not None and parsed.sop_instance_uid != expect_sop_instance_uid:
            # As an import job treats a File Meta that contradicts the data set: the data set wins.
            parsed.warnings.insert(0, {
                "warning_reason_code": 0xB000, "type": "COERCION_OF_DATA_ELEMENTS",
                "message": f"Affected SOP Instance UID {expect_sop_instance_uid} differs from the data set's "
                           f"SOP Instance UID {parsed.sop_instance_uid}; the data set's is used"})
        warnings = tuple(parsed.warnings)
        if _staged_before_answer(parsed):
            writer = writer_of(self.stores)
            staged = stage_parsed(parsed, writer.blobs, options, size=len(data))
            writer.blobs.sync()  # the spooled record names these frames: on disk before it is
            warnings = tuple(staged["warnings"])
            payload = json.dumps(staged).encode()
            offset = _append(segment, Kind.STAGED, datastore_id, payload)
            entry = self._enqueue(segment, datastore_id, offset, len(payload), options=options)
            with self._cond:
                entry.staged = staged
                self._cond.notify_all()
        else:
            self._wait_for_room()
            offset = _append(segment, Kind.RAW, datastore_id, data)
            entry = self._enqueue(segment, datastore_id, offset, len(data), options=options)
            entry.name = parsed.sop_instance_uid or entry.name
            with self._cond:
                self._backlog_bytes += len(data)
            self._to_stage.put(entry)
        return Stored(parsed.sop_class_uid, parsed.sop_instance_uid, warnings, parsed.study_instance_uid,
                      parsed.series_instance_uid)

    def _enqueue(self, segment: Segment, datastore_id: str, offset: int, length: int, *,
                 options: StagingOptions | None = None, recovered: bool = False) -> _Entry:
        now = time.monotonic()
        with self._cond:
            if recovered:  # the segment was written by an earlier run: count its records here
                segment.appended += 1
            self._seq += 1
            entry = _Entry(self._seq, datastore_id, segment, offset, length, now)
            d = self._datastores.setdefault(datastore_id, _Datastore())
            d.entries.append(entry)
            d.last_at = now
            if options is not None:
                d.options = options
            return entry

    def _wait_for_room(self) -> None:
        with self._cond:
            while self._backlog_bytes >= self.max_backlog_bytes and not self._stopping:
                self._cond.wait(1.0)

    def end_segment(self, segment: Segment) -> None:
        """The association is over: close its segment and commit its instances soon."""
        segment.close()
        if segment.done:
            segment.delete()
        with self._cond:
            for d in self._datastores.values():
                if any(e.segment is segment for e in d.entries):
                    d.urgent = True
            self._cond.notify_all()

    def flush(self, datastore_id: str | None = None, timeout: float = 60.0) -> bool:
        """Commit everything received so far (for one datastore or all); False if not done in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._seq
            for ds, d in self._datastores.items():
                if datastore_id is None or ds == datastore_id:
                    d.urgent = True
            self._cond.notify_all()
            while any(d.entries and d.entries[0].seq <= target for ds, d in self._datastores.items()
                      if datastore_id is None or ds == datastore_id):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._committer is None:
                    return False
                self._cond.wait(remaining)
            return True

    def pending(self, datastore_id: str | None = None) -> int:
        """Instances received but not yet committed."""
        with self._cond:
            return sum(len(d.entries) for ds, d in self._datastores.items()
                       if datastore_id is None or ds == datastore_id)

    # -- staging ------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            try:
                entry = self._to_stage.get(timeout=POOL_IDLE_SECONDS)
            except queue.Empty:  # idle: let the staging processes go
                with self._cond:
                    pool = self._pool if self._in_flight == 0 else None
                    if pool is not None:
                        self._pool = None
                if pool is not None:
                    pool.shutdown(wait=False)
                continue
            if entry is None:
                break
            with self._cond:
                while self._in_flight >= self.workers * 2:
                    self._cond.wait()
                self._in_flight += 1
            try:
                options = self._options(entry.datastore_id)
                future = self._executor().submit(_stage_spooled, str(entry.segment.path), entry.offset,
                                                 entry.length, options)
            except Exception as exc:  # no datastore any more, or no process could be started
                self._done(entry, None, exc)
                continue
            future.add_done_callback(functools.partial(self._done, entry))
        with self._cond:  # let the tasks in flight finish
            while self._in_flight:
                self._cond.wait()

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # A staging process forks from the fork server: it starts in milliseconds, not seconds.
            self._pool = cf.ProcessPoolExecutor(max_workers=self.workers,
                                                mp_context=fork_server(("tessel.ingest.jobs", __name__)),
                                                initializer=_worker_init, initargs=(self.stores.settings,))
        return self._pool

    def _done(self, entry: _Entry, future: cf.Future[tuple[bool, Any]] | None,
              error: BaseException | None = None) -> None:
        """A staging task ended (or could not start: `error`)."""
        ok, result = False, None
        try:
            if future is not None:
                ok, result = future.result()
        except cf.process.BrokenProcessPool:
            # A staging process died (a decoder crashed): a new pool, and one more try.
            with self._cond:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                    self._pool = None
            entry.attempts += 1
            if entry.attempts < 2:
                self._to_stage.put(entry)
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
                return
            result = "the instance crashed the decoder twice"
        except Exception as exc:  # the task could not run at all (e.g. the pool is shutting down)
            error = exc
        if error is not None:
            result = error.message if isinstance(error, TesselError) else f"{type(error).__name__}: {error}"
        self._staged(entry, ok, result)

    def _staged(self, entry: _Entry, ok: bool, result: Any) -> None:
        if not ok:
            self._set_aside(entry, str(result))
        with self._cond:
            if ok:
                entry.staged = result
            self._backlog_bytes -= entry.length
            self._in_flight -= 1
            self._cond.notify_all()

    def _options(self, datastore_id: str) -> StagingOptions:
        with self._cond:
            d = self._datastores.get(datastore_id)
            if d is not None and d.options is not None:
                return d.options
        options = staging_options(self.stores, datastore_id)
        with self._cond:
            self._datastores.setdefault(datastore_id, _Datastore()).options = options
        return options

    def _set_aside(self, entry: _Entry, reason: str) -> None:
        """An acknowledged instance that cannot be stored: keep its bytes under spool/failed/."""
        try:
            data = entry.segment.read(entry.offset, entry.length)
            path = self.spool.set_aside(data, entry.name, reason)
        except OSError:
            log.exception("DIMSE instance %s could not be stored (%s) nor set aside; it stays spooled",
                          entry.name, reason)
            return
        log.error("DIMSE instance %s could not be stored after it was acknowledged: %s; kept as %s",
                  entry.name, reason, path)
        with self._cond:
            entry.failed = True
            self._cond.notify_all()

    # -- committing ---------------------------------------------------------------------------

    def _ready(self, d: _Datastore, now: float) -> tuple[int, float | None]:
        """How many head entries to commit now (0: none), and when to look again."""
        ready = 0
        for entry in d.entries:
            if entry.staged is None and not entry.failed:
                break
            ready += 1
            if ready >= self.max_batch:
                break
        if not ready:
            return 0, None
        if d.failing_since is not None and not self._stopping:
            at = d.failing_since + RETRY_SECONDS
        elif self._stopping or ready >= self.max_batch:
            at = now
        else:
            at = d.entries[0].received_at + self.max_age
            if ready == len(d.entries):  # none still being staged
                at = min(at, now if d.urgent else d.last_at + self.idle)
        return (ready, None) if at <= now else (0, at - now)

    def _commit_loop(self) -> None:
        failed_at_stop: set[str] = set()  # when stopping, a datastore whose commit fails stays spooled
        while True:
            with self._cond:
                now = time.monotonic()
                due: list[tuple[str, int]] = []
                wake: float | None = None
                for ds, d in self._datastores.items():
                    count, later = self._ready(d, now)
                    if count and not (self._stopping and ds in failed_at_stop):
                        due.append((ds, count))
                    elif later is not None:
                        wake = later if wake is None else min(wake, later)
                if not due:
                    dispatcher = self._dispatcher
                    if self._stopping and (dispatcher is None or not dispatcher.is_alive()):
                        return
                    self._cond.wait(min(wake, 1.0) if wake is not None else 1.0)
                    continue
            for ds, count in due:
                if not self._commit(ds, count) and self._stopping:
                    failed_at_stop.add(ds)

    def _commit(self, datastore_id: str, count: int) -> bool:
        with self._cond:
            d = self._datastores[datastore_id]
            batch = [d.entries[i] for i in range(count)]
        staged = [e.staged for e in batch if e.staged is not None and not e.failed]
        try:
            if staged:  # with STOW-RS's commits: the frames the staging processes wrote are synced there
                writer_of(self.stores).commit(datastore_id, staged)
        except NotFound:
            if self.stores.catalog.get_datastore(datastore_id) is not None:
                self._failed(d, datastore_id)
                return False
            log.warning("datastore %s no longer exists: dropping %d received DIMSE instance(s)",
                        datastore_id, len(staged))
        except Exception:  # keep them: they are spooled, retried here and replayed at start
            self._failed(d, datastore_id)
            return False
        finished: list[Segment] = []
        with self._cond:
            for _ in batch:
                d.entries.popleft()
            d.failing_since = None
            if not d.entries:
                d.urgent = False
            self._cond.notify_all()
        for entry in batch:
            if entry.segment.settle() and entry.segment not in finished:
                finished.append(entry.segment)
        for segment in finished:
            segment.delete()
        log.debug("committed %d DIMSE instance(s) into datastore %s", len(staged), datastore_id)
        return True

    def _failed(self, d: _Datastore, datastore_id: str) -> None:
        with self._cond:
            first = d.failing_since is None
            d.failing_since = time.monotonic()
        if first:
            log.exception("committing received DIMSE instances of datastore %s failed; retrying", datastore_id)
