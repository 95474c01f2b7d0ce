"""The writer's half-encoded latest documents decode to exactly what documents.encode would store."""

from __future__ import annotations

import copy
from typing import Any

from tessel import documents
from tessel.ingest.latest import Latest, LatestDocuments, levels_before


def _staged(series: str, sop: str, *, name: str = "DOE^JOHN", number: int = 1) -> dict[str, Any]:
    return {"patient": {"PatientName": name, "PatientID": "P1"}, "study": {"StudyInstanceUID": "1.2"},
            "series": {"SeriesInstanceUID": series, "Modality": "CT"}, "series_instance_uid": series,
            "sop_instance_uid": sop,
            "instance": {"DICOM": {"InstanceNumber": number, "Note": "ü"}, "DICOMVRs": {},
                         "ImageFrames": [{"ID": sop * 2, "FrameSizeInBytes": 10}]}}


def _add(entry: Latest, items: list[dict[str, Any]]) -> tuple[bytes, bool]:
    """Put `items` and encode; (bytes, whether the incremental path was taken)."""
    before = levels_before(entry.doc)
    compressed_before = bytes(entry.compressed) if entry.compressed is not None else None
    for item in items:
        documents.put_instance(entry.doc, item)
    data = entry.encode([(i["series_instance_uid"], i["sop_instance_uid"], i["instance"]) for i in items], before)
    incremental = compressed_before is not None and bytes(entry.compressed or b"").startswith(compressed_before)
    return data, incremental


def test_appended_instances_decode_to_the_same_document_and_skip_the_full_encode() -> None:
    entry = Latest.of(0, documents.new_document("ds", "is"))
    reference = documents.new_document("ds", "is")
    steps = [[_staged("1.2.3", "a")], [_staged("1.2.3", "b", number=2)],
             [_staged("1.2.3", "c", number=3), _staged("1.2.3", "d", number=4)]]
    paths = []
    for items in steps:
        for item in items:
            documents.put_instance(reference, copy.deepcopy(item))
        data, incremental = _add(entry, items)
        paths.append(incremental)
        assert documents.decode(data) == reference
    assert paths == [False, True, True]  # the first makes the state, the next ones extend it


def test_changes_other_than_appending_re_encode_the_whole_document() -> None:
    entry = Latest.of(0, documents.new_document("ds", "is"))
    reference = documents.new_document("ds", "is")
    steps = [
        [_staged("1.2.3", "a"), _staged("1.2.3", "b")],
        [_staged("1.2.3", "b", number=7)],  # b replaced in place: not an append
        [_staged("1.2.3", "a", number=9)],  # the first instance replaced
        [_staged("1.2.4", "x")],  # a new series
        [_staged("1.2.3", "c")],  # an instance of a series that is not the last
        [_staged("1.2.4", "y", name="DOE^JANE")],  # a corrected patient name
        [_staged("1.2.4", "z", name="DOE^JANE")],  # back to appending
    ]
    paths = []
    for items in steps:
        for item in items:
            documents.put_instance(reference, copy.deepcopy(item))
        data, incremental = _add(entry, items)
        paths.append(incremental)
        assert documents.decode(data) == reference
    assert paths == [False, False, False, False, False, False, True]


def test_an_entry_is_handed_out_once_and_only_for_its_version() -> None:
    cache = LatestDocuments(capacity=2)
    cache.put("s1", Latest.of(3, documents.new_document("ds", "s1")))
    assert cache.peek("s1", 3) is not None and cache.peek("s1", 2) is None
    assert cache.take("s1", 2) is None  # stale: dropped
    assert cache.take("s1", 3) is None
    cache.put("s1", Latest.of(3, documents.new_document("ds", "s1")))
    assert cache.take("s1", 3) is not None and cache.take("s1", 3) is None  # one user at a time
    for name in ("a", "b", "c"):
        cache.put(name, Latest.of(1, documents.new_document("ds", name)))
    assert cache.peek("a", 1) is None and cache.peek("c", 1) is not None  # least recently used went
