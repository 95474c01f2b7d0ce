"""The only write path: Part 10 bytes in, image-set versions out.

Every front end ends here: import jobs (`jobs`); a running server's uploads
(STOW-RS, C-STORE) through its one `writer` (group commit, one blob sync per commit,
incrementally built documents: `latest`), C-STOREs after the write-ahead `spool` of
`received` (answered once spooled, staged and committed in the background); and
`store_instances` for callers without a server.
A front end that receives instances one by one (STOW-RS streams its parts)
stages each as it arrives with `stage_upload` and commits them all together
with `commit_staged`, so one request makes one version per image set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tessel.blobs import BlobStore
from tessel.errors import InvalidInput
from tessel.ingest.assemble import Placement, assemble
from tessel.ingest.staging import StagingOptions, stage_bytes, stage_file
from tessel.lifecycle.datastores import get_datastore, lossless_syntax
from tessel.stores import Stores


@dataclass(frozen=True, slots=True)
class StoreResult:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    placement: Placement | None
    failure: str | None
    warnings: tuple[dict[str, Any], ...] = ()
    failure_kind: str | None = None  # the InvalidInput reason: not-dicom, truncated, transfer-syntax, ...
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Staged:
    """One upload after staging: its staged record (blobs written, nothing visible yet), or why not."""

    record: dict[str, Any] | None
    failure: str | None = None
    failure_kind: str | None = None


def staging_options(stores: Stores, datastore_id: str) -> StagingOptions:
    ds = get_datastore(stores, datastore_id)
    # An upload is staged on a thread of the server: its frames on every core (a whole-slide
    # instance has tens of thousands).
    return StagingOptions(datastore_id=ds.id, lossless_format=lossless_syntax(ds.lossless_storage_format),
                          frame_threads=stores.settings.resolved_workers)


def stage_upload(source: bytes | Path, stores: Stores, options: StagingOptions, *,
                 blobs: BlobStore | None = None) -> Staged:
    """Stage one uploaded instance (bytes, or a file for large ones): a bad one says why.
    `blobs`: where frames go (the writer's store, which syncs per group), else stores.blobs."""
    target = blobs if blobs is not None else stores.blobs
    try:
        if isinstance(source, Path):
            return Staged(stage_file(source, target, options))
        return Staged(stage_bytes(source, target, options))
    except InvalidInput as exc:
        reason = exc.fields.get("reason")
        return Staged(None, exc.message, str(reason) if reason else None)
    except RecursionError:
        return Staged(None, "data set nesting is too deep to parse", "nesting")


def commit_staged(stores: Stores, datastore_id: str, staged: Sequence[Staged], *,
                  writer: Any = None) -> list[StoreResult]:
    """Commit the staged uploads together: at most one new version per touched image set
    (through `writer`, an ingest.writer.Writer, when given: group commit with other callers)."""
    good = [s.record for s in staged if s.record is not None]
    if not good:
        placements: Any = iter(())
    elif writer is not None:
        placements = iter(writer.commit(datastore_id, good))
    else:
        placements = iter(assemble(stores.catalog, stores.blobs, datastore_id, good))
    results = []
    for item in staged:
        record = item.record
        if record is None:
            results.append(StoreResult(None, None, None, item.failure, failure_kind=item.failure_kind))
        else:
            results.append(StoreResult(record["sop_class_uid"], record["sop_instance_uid"], next(placements),
                                       None, tuple(record["warnings"]),
                                       study_instance_uid=record["study_instance_uid"],
                                       series_instance_uid=record["series_instance_uid"]))
    return results


def store_instances(stores: Stores, datastore_id: str, parts: Sequence[bytes]) -> list[StoreResult]:
    """Stage and commit uploaded instances; one new version per touched image set."""
    options = staging_options(stores, datastore_id)
    return commit_staged(stores, datastore_id, [stage_upload(data, stores, options) for data in parts])
