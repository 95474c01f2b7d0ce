"""The level table: real keywords, no overlaps, grouping elements where spec section 3 puts them."""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

from tessel.dicom.levels import GROUPING, PATIENT, SERIES, STUDY, level_of


def test_every_keyword_in_the_table_is_in_the_data_dictionary() -> None:
    unknown = sorted(k for k in PATIENT | STUDY | SERIES if tag_for_keyword(k) is None)
    assert unknown == []


def test_levels_do_not_overlap() -> None:
    assert not PATIENT & STUDY and not STUDY & SERIES and not PATIENT & SERIES


def test_grouping_elements_are_at_the_levels_the_spec_names() -> None:
    assert {k: level_of(k) for k in GROUPING} == GROUPING
    assert level_of("PatientName") == "patient"
    assert level_of("ReferringPhysicianName") == "study"
    assert level_of("FrameOfReferenceUID") == level_of("Manufacturer") == "series"
    for key in ("SOPInstanceUID", "TransferSyntaxUID", "PixelData", "00291010", "PerformedProcedureStepID"):
        assert level_of(key) == "instance"
