"""Study searches by one exact PatientID or AccessionNumber run a prepared statement
(catalog/query.py _STUDIES_BY): the same studies, order and pages as the general query."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessel.catalog import query
from tessel.ingest import store_instances
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores
from tests.factory import make_instance


@pytest.mark.parametrize("keyword", ["PatientID", "AccessionNumber"])
def test_exact_study_keys_match_the_general_query(stores: Stores, tmp_path: Path, keyword: str) -> None:
    ds = create_datastore(stores, name="exact").id
    paths = []
    for n in range(7):
        extra = {"PatientID": "PAT-1" if n < 5 else "PAT-2", "AccessionNumber": "ACC-1" if n % 2 else "ACC-2"}
        paths.append(make_instance(tmp_path / f"{n}.dcm", study=f"1.2.826.0.1.3680043.8.498.77{n}",
                                   series=f"1.2.826.0.1.3680043.8.498.78{n}", extra=extra))
    store_instances(stores, ds, [p.read_bytes() for p in paths])
    value = "PAT-1" if keyword == "PatientID" else "ACC-1"
    for limit, offset in ((1000, 0), (2, 0), (2, 2), (2, 4), (3, 10)):
        prepared = query.query(stores.catalog, ds, "STUDY", {keyword: value}, limit=limit, offset=offset)
        # Two terms of one value: the same match, through the general (built per query) statement.
        general = query.query(stores.catalog, ds, "STUDY", {keyword: f"{value}\\{value}"}, limit=limit,
                              offset=offset)
        assert prepared == general
    every = query.query(stores.catalog, ds, "STUDY", {keyword: value})
    assert len(every) == (5 if keyword == "PatientID" else 3)
    assert {r[keyword] for r in every} == {value}
    assert query.query(stores.catalog, ds, "STUDY", {keyword: "NOBODY"}, limit=10) == []
