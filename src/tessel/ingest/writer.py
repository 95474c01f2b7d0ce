"""The write path of a running server: STOW-RS and C-STORE instances are committed here.

Instances arrive one request (or one C-STORE) at a time. Per instance, `stage` writes frames
and bulk data through the server's encrypted blob store WITHOUT a sync each (a whole-slide
instance has tens of thousands of frames; one fsync each took minutes). `commit` then hands
the staged records to one committer thread and waits: the committer takes everything that
is waiting -- from every request and association -- and makes it durable together: one
catalog transaction per series (`assemble`, whose documents grow incrementally: ingest/latest.py)
that syncs the blob store once before its COMMIT. So a caller that returns from `commit` has its instances
durable and readable, and concurrent callers share the syncs and transactions (group commit).

A group whose commit fails is retried caller by caller, so one caller's bad instance cannot
fail the others'.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tessel.blobs import BlobStore
from tessel.ingest.assemble import Placement, assemble
from tessel.ingest.staging import StagingOptions
from tessel.stores import Stores, encrypted_blobs

MAX_GROUP = 2000  # staged instances per group commit


def staging_blobs(stores: Stores) -> BlobStore:
    """The server's blob store (encrypted as every other blob), but writing without a sync each:
    the writer syncs once per group before the catalog names the blobs."""
    if stores.crypto is None:  # a Stores made by hand (tests) without encryption: as it is
        return stores.blobs
    return encrypted_blobs(stores.settings, stores.crypto, fsync=False)


@dataclass(eq=False, slots=True)
class _Waiting:
    datastore_id: str
    records: list[dict[str, Any]]
    done: Future[list[Placement]] = field(default_factory=Future)


class Writer:
    """Group commit for one server process (one per Stores: `writer_of`)."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.blobs = staging_blobs(stores)
        self._cond = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.groups = 0  # commits made (for tests and logs)

    def stage(self, source: bytes | Path, options: StagingOptions) -> Any:
        """Stage one uploaded instance (see ingest.stage_upload): blobs written, not yet synced."""
        from tessel.ingest import stage_upload

        return stage_upload(source, self.stores, options, blobs=self.blobs)

    def commit(self, datastore_id: str, records: Sequence[dict[str, Any]]) -> list[Placement]:
        """Make staged records durable and visible; one Placement per record, in order."""
        if not records:
            return []
        waiting = _Waiting(datastore_id, list(records))
        with self._cond:
            if self._closed:
                raise RuntimeError("the writer is closed")
            self._waiting.append(waiting)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tessel-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return waiting.done.result()

    def close(self) -> None:
        """Commit what is waiting, then stop the committer."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(60)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    self._thread = None
                    return
                group, size = [], 0
                while self._waiting and (not group or size + len(self._waiting[0].records) <= MAX_GROUP):
                    item = self._waiting.pop(0)
                    group.append(item)
                    size += len(item.records)
            self._commit_group(group)

    def _assemble(self, datastore_id: str, records: list[dict[str, Any]]) -> list[Placement]:
        # The documents go through the staging store too: one sync per transaction, before its
        # COMMIT, makes the group's frames and documents durable together.
        return assemble(self.stores.catalog, self.blobs, datastore_id, records, sync=True)

    def _commit_group(self, group: list[_Waiting]) -> None:
        by_datastore: dict[str, list[_Waiting]] = {}
        for item in group:
            by_datastore.setdefault(item.datastore_id, []).append(item)
        for datastore_id, items in by_datastore.items():
            try:
                placements = self._assemble(datastore_id, [r for item in items for r in item.records])
            except Exception as exc:
                if len(items) == 1:
                    items[0].done.set_exception(exc)
                    continue
                for item in items:  # alone, so that one caller's failure is only its own
                    try:
                        item.done.set_result(self._assemble(datastore_id, item.records))
                    except Exception as exc:
                        item.done.set_exception(exc)
                continue
            start = 0
            for item in items:
                item.done.set_result(placements[start:start + len(item.records)])
                start += len(item.records)
        self.groups += 1


_LOCK = threading.Lock()


def writer_of(stores: Stores) -> Writer:
    """The one Writer of `stores` (made on first use; Stores.close closes it)."""
    with _LOCK:
        if stores.writer is None:
            stores.writer = Writer(stores)
        writer: Writer = stores.writer
        return writer
