"""ListImageSetVersions and GetImageSet, and concurrent writers on one image set."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tessel import retrieve
from tessel.catalog.models import ImageSetWorkflowStatus
from tessel.errors import Conflict, NotFound
from tessel.lifecycle.datastores import create_datastore
from tessel.lifecycle.imagesets import (copy_image_set, get_image_set_version, list_image_set_versions,
                                        update_image_set_metadata)
from tessel.stores import Stores
from tests.lifecycle import document, make_image_set, uid


@pytest.fixture
def ds(stores: Stores) -> str:
    return create_datastore(stores, "t").id


@pytest.fixture
def image_set(stores: Stores, ds: str) -> str:
    image_set_id = make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=1)
    for version in range(1, 5):  # versions 2..5
        update_image_set_metadata(stores, ds, image_set_id, latest_version_id=version, updatable={
            "SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": f"V{version + 1}"}}})
    return image_set_id


def test_versions_are_listed_newest_first_in_pages(stores: Stores, ds: str, image_set: str) -> None:
    first = list_image_set_versions(stores, ds, image_set, limit=2, before_version=None)
    assert [v.version_id for v in first] == [5, 4]
    second = list_image_set_versions(stores, ds, image_set, limit=2, before_version=first[-1].version_id)
    third = list_image_set_versions(stores, ds, image_set, limit=2, before_version=second[-1].version_id)
    assert [v.version_id for v in second + third] == [3, 2, 1]
    assert third[-1].workflow_status == ImageSetWorkflowStatus.CREATED
    assert {v.workflow_status for v in first + second} == {ImageSetWorkflowStatus.UPDATED}
    with pytest.raises(NotFound):
        list_image_set_versions(stores, ds, "0" * 32, limit=2, before_version=None)


def test_get_image_set_version_answers_for_any_version(stores: Stores, ds: str, image_set: str) -> None:
    latest, version = get_image_set_version(stores, ds, image_set, None)
    assert (latest.latest_version, version.version_id) == (5, 5)
    _, old = get_image_set_version(stores, ds, image_set, 2)
    assert old.version_id == 2 and old.created_at <= version.created_at
    assert document(stores, ds, image_set, 2)["Study"]["DICOM"]["StudyDescription"] == "V2"
    with pytest.raises(NotFound):
        get_image_set_version(stores, ds, image_set, 6)
    with pytest.raises(NotFound):
        get_image_set_version(stores, "0" * 32, image_set, None)


def _race(calls: list[Any]) -> list[Any]:
    """Run the calls at the same moment in threads; each result is a value or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # collected for the assertions below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_updates_make_exactly_one_version_each(stores: Stores, ds: str, image_set: str) -> None:
    for round_ in range(6):
        version = retrieve.get_image_set(stores, ds, image_set).latest_version

        def writer(name: str, version: int = version) -> Any:
            return update_image_set_metadata(stores, ds, image_set, latest_version_id=version, updatable={
                "SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": name}}})

        results = _race([lambda: writer("A"), lambda: writer("B")])
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert isinstance(losers[0], Conflict)
        # The loser finds the image set locked by the winner's write, or already at the next version.
        assert ("is locked by another write operation" in losers[0].message
                or f"at version {version + 1}, not version {version}" in losers[0].message), losers[0].message
        assert winners[0].latest_version == version + 1
        assert document(stores, ds, image_set)["Study"]["DICOM"]["StudyDescription"] == \
            winners[0].study_description
    versions = list_image_set_versions(stores, ds, image_set, limit=50, before_version=None)
    assert [v.version_id for v in versions] == list(range(11, 0, -1))


def test_a_copy_racing_an_update_of_its_destination_gets_a_conflict(stores: Stores, ds: str,
                                                                    image_set: str) -> None:
    _, destination = copy_image_set(stores, ds, image_set, source_latest_version=5)
    other = make_image_set(stores, ds, study=uid("study"), series=uid("series"), count=1, start=5,
                           patient_id="OTHER")
    results = _race([
        lambda: update_image_set_metadata(stores, ds, destination.id, latest_version_id=1, updatable={
            "SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "X"}}}),
        lambda: copy_image_set(stores, ds, other, source_latest_version=1, force=True,
                               destination_image_set_id=destination.id, destination_latest_version=1),
    ])
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    assert retrieve.get_image_set(stores, ds, destination.id).latest_version == 2
