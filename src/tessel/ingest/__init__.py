"""The only write path: Part 10 bytes in, image-set versions out.

Every front end ends here: import jobs (`jobs`), and `store_instances` for
uploads that arrive one request or association at a time (STOW-RS, C-STORE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from tessel.errors import InvalidInput
from tessel.ingest.assemble import Placement, assemble
from tessel.ingest.staging import StagingOptions, stage_bytes
from tessel.lifecycle.datastores import get_datastore, lossless_syntax
from tessel.stores import Stores


@dataclass(frozen=True, slots=True)
class StoreResult:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    placement: Placement | None
    failure: str | None
    warnings: tuple[dict[str, Any], ...] = ()


def store_instances(stores: Stores, datastore_id: str, parts: Sequence[bytes]) -> list[StoreResult]:
    """Stage and commit uploaded instances; one new version per touched image set."""
    ds = get_datastore(stores, datastore_id)
    options = StagingOptions(datastore_id=ds.id, lossless_format=lossless_syntax(ds.lossless_storage_format))
    staged: list[dict[str, Any] | None] = []
    failures: list[str | None] = []
    for data in parts:
        try:
            staged.append(stage_bytes(data, stores.blobs, options))
            failures.append(None)
        except InvalidInput as exc:
            staged.append(None)
            failures.append(exc.message)
        except RecursionError:
            staged.append(None)
            failures.append("data set nesting is too deep to parse")
    good = [s for s in staged if s is not None]
    placements = iter(assemble(stores.catalog, stores.blobs, ds.id, good))
    results = []
    for item, failure in zip(staged, failures):
        if item is None:
            results.append(StoreResult(None, None, None, failure))
        else:
            results.append(StoreResult(item["sop_class_uid"], item["sop_instance_uid"], next(placements),
                                       None, tuple(item["warnings"])))
    return results
