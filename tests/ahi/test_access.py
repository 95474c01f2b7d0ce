"""lastAccessedAt is written in batches off the frame path; storageTier follows from it."""

from __future__ import annotations

import time

from tessel.ahi.access import ARCHIVE_AFTER, AccessLog, storage_tier
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores
from tests.lifecycle import make_image_set, uid


def test_accesses_are_written_in_one_batch(stores: Stores) -> None:
    ds = create_datastore(stores, "t").id
    first = make_image_set(stores, ds, study=uid("a"), series=uid("a", 1), count=1)
    second = make_image_set(stores, ds, study=uid("b"), series=uid("b", 1), count=1)
    log = AccessLog(stores.catalog)
    before = time.time()
    log.record(first)
    log.record(second)
    log.record(first)
    assert stores.catalog.get_image_set(ds, first).last_accessed_at is None  # not yet written
    assert log.flush() == 2
    for image_set_id in (first, second):
        found = stores.catalog.get_image_set(ds, image_set_id)
        assert found is not None and found.last_accessed_at is not None and found.last_accessed_at >= before
    assert log.flush() == 0


def test_the_storage_tier_follows_the_last_access() -> None:
    now = time.time()
    assert storage_tier(now - 10, None, now) == "FREQUENT_ACCESS"
    assert storage_tier(now - ARCHIVE_AFTER - 10, None, now) == "ARCHIVE_INSTANT_ACCESS"
    assert storage_tier(now - 2 * ARCHIVE_AFTER, now - 60, now) == "FREQUENT_ACCESS"
    assert storage_tier(now - 3 * ARCHIVE_AFTER, now - 2 * ARCHIVE_AFTER, now) == "ARCHIVE_INSTANT_ACCESS"
