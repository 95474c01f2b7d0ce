"""C-FIND SCP: Patient Root and Study Root Query/Retrieve at PATIENT, STUDY, SERIES and IMAGE level.

The request identifier becomes `catalog.query` matches (PS3.4 C.2.2 matching: single value,
wildcards, ranges, UID lists, universal), and each matching entity one pending response
holding exactly the requested keys (empty when the entity has no value), the level's unique
key, the Query/Retrieve Level and the Retrieve AE Title. Matching is relational: keys of
higher levels may be given at any level (hierarchical requests are a special case).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelFind)

from tessel.catalog.query import query
from tessel.dimse.datasets import identifier, query_request
from tessel.dimse.status import CANCEL, PENDING
from tessel.stores import Stores

FIND_MODELS = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
UNIQUE_KEYS = {"PATIENT": ("PatientID",), "STUDY": ("StudyInstanceUID",),
               "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
               "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def find(stores: Stores, datastore_id: str | None, model_uid: str, request: Dataset, ae_title: str,
         is_cancelled: Callable[[], bool],
         visible_studies: Callable[[list[str]], set[str]] | None = None) -> Iterator[tuple[int, Dataset | None]]:
    """Pending (status, identifier) pairs, one per match; pynetdicom sends the final Success.
    `visible_studies` leaves out studies the caller may not see (tessel.auth.access)."""
    req = query_request(request, allow_patient_level=model_uid == PatientRootQueryRetrieveInformationModelFind)
    if datastore_id is None:
        return  # no datastore yet: nothing matches
    keys = list(req.keys)
    for unique in UNIQUE_KEYS[req.level]:  # the SCU needs them to ask for the next level
        if unique not in keys:
            keys.append(unique)
    rows: list[dict[str, Any]] = query(stores.catalog, datastore_id, req.level, req.matches,
                                       include=set(keys), visible_studies=visible_studies)
    for row in rows:
        if is_cancelled():
            yield CANCEL, None
            return
        yield PENDING, identifier(row, keys, req.level, ae_title, availability=req.availability)
