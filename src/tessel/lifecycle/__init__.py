"""Datastores and image-set life cycle: create/delete datastores; update, copy, delete image sets."""

from __future__ import annotations

import logging

from tessel.lifecycle import datastores, deletion, imagesets
from tessel.stores import Stores

log = logging.getLogger("tessel.lifecycle")

# A write holds its locks for seconds; one locked for longer was cut short by a stopped process.
STALE_AFTER = 300.0


def maintain(stores: Stores, *, stale_after: float = STALE_AFTER, grace: float = deletion.GRACE) -> None:
    """Background upkeep (the server runs it at start and then every minute): finish or undo
    transitions a stopped process left half-done, and delete the frames of deleted image sets."""
    datastores.recover_datastores(stores, older_than=stale_after)
    released = imagesets.recover_image_sets(stores, older_than=stale_after)
    if released:
        log.warning("released %d image set(s) left LOCKED by an interrupted write", released)
    deletion.purge_frames(stores, grace=grace)
