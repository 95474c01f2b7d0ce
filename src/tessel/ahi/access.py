"""lastAccessedAt and storageTier of image sets, as AHI reports them.

AHI counts GetImageFrame, GetImageSetMetadata, UpdateImageSetMetadata and
CopyImageSet as access; an image set not accessed for 30 days moves from
FREQUENT_ACCESS to ARCHIVE_INSTANT_ACCESS (still read in milliseconds) and
back on its next access. tessel has one storage class, so the tier is derived
from the timestamps when an answer is rendered.

Writing a row on every frame read would put a catalog write on the hottest
path, so accesses are remembered in memory and written in one batch every
`interval` seconds by a background thread (and when the server stops); the
catalog's lastAccessedAt is at most that much behind.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from tessel.catalog import Catalog
from tessel.catalog.sql.tables import image_sets

log = logging.getLogger("tessel.ahi")

ARCHIVE_AFTER = 30 * 86400.0


def storage_tier(created_at: float, last_accessed_at: float | None, now: float | None = None) -> str:
    last = max(created_at, last_accessed_at or 0.0)
    return "ARCHIVE_INSTANT_ACCESS" if (now or time.time()) - last > ARCHIVE_AFTER else "FREQUENT_ACCESS"


class AccessLog:
    def __init__(self, catalog: Catalog, *, interval: float = 30.0) -> None:
        self.catalog = catalog
        self.interval = interval
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, image_set_id: str) -> None:
        self._pending[image_set_id] = time.time()  # one dict store: atomic under the GIL

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            with self.catalog.write() as conn:
                conn.execute(sa.update(image_sets).where(image_sets.c.id == sa.bindparam("image_set_id"))
                             .values(last_accessed_at=sa.bindparam("at")),
                             [{"image_set_id": k, "at": v} for k, v in pending.items()])
        return len(pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tessel-access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the catalog was busy or gone: these accesses are retried next time
                log.exception("could not record image set accesses")
