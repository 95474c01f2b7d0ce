"""C-FIND with findscu (Patient Root -P, Study Root -S) and a pynetdicom SCU."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (CTImageStorage, PatientRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelFind)

from tests.dimse.conftest import Dimse, running_dimse
from tests.factory import make_instance, make_series

STUDY_A, STUDY_B = "1.2.826.0.1.3680043.10.1437.1", "1.2.826.0.1.3680043.10.1437.2"
SERIES_A1, SERIES_A2, SERIES_B1 = STUDY_A + ".1", STUDY_A + ".2", STUDY_B + ".1"


@dataclass
class Archive:
    dimse: Dimse
    sops_a1: list[str]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    tmp = tmp_path_factory.mktemp("find")
    with running_dimse(tmp) as dimse:
        a1 = make_series(tmp / "a1", 3, study=STUDY_A, series=SERIES_A1, rows=16, columns=16,
                         extra={"StudyDate": "20240115", "StudyDescription": "CT CHEST"})
        a2 = make_series(tmp / "a2", 2, study=STUDY_A, series=SERIES_A2, series_number=2, rows=16, columns=16,
                         extra={"StudyDate": "20240115", "StudyDescription": "CT CHEST"})
        b1 = make_series(tmp / "b1", 2, study=STUDY_B, series=SERIES_B1, patient_id="P2",
                         patient_name="Roe^Jane", rows=16, columns=16, extra={"StudyDate": "20230310"})
        dimse.store(*a1, *a2, *b1)
        yield Archive(dimse, [str(dcmread(p).SOPInstanceUID) for p in a1])


def findscu(dimse: Dimse, model: str, *keys: str) -> list[Dataset]:
    """findscu's responses, extracted to files (-X) and read back."""
    out = dimse.tmp / f"rsp-{abs(hash((model, keys)))}"
    out.mkdir(exist_ok=True)
    args = [model, "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    dimse.run("findscu", *args)
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_patient_root_finds_patients_by_name_wildcard(archive: Archive) -> None:
    (patient,) = findscu(archive.dimse, "-P", "QueryRetrieveLevel=PATIENT", "PatientName=Doe*", "PatientID",
                         "NumberOfPatientRelatedStudies")
    assert patient.PatientID == "P1"
    assert str(patient.PatientName) == "Doe^John"
    assert patient.NumberOfPatientRelatedStudies == 1
    assert patient.QueryRetrieveLevel == "PATIENT" and patient.RetrieveAETitle == "TESSEL"


def test_patient_root_study_level_within_a_patient(archive: Archive) -> None:
    (study,) = findscu(archive.dimse, "-P", "QueryRetrieveLevel=STUDY", "PatientID=P2", "StudyInstanceUID",
                       "StudyDate")
    assert study.StudyInstanceUID == STUDY_B and study.StudyDate == "20230310"


def test_study_root_date_range_returns_the_requested_keys_only(archive: Archive) -> None:
    (study,) = findscu(archive.dimse, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240101-20240131",
                       "StudyInstanceUID", "PatientName", "AccessionNumber", "ReferringPhysicianName",
                       "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy")
    assert study.StudyInstanceUID == STUDY_A
    assert study.NumberOfStudyRelatedSeries == 2 and study.NumberOfStudyRelatedInstances == 5
    assert list(study.ModalitiesInStudy) == ["CT"] or study.ModalitiesInStudy == "CT"
    assert "ReferringPhysicianName" in study and not study.ReferringPhysicianName  # asked for, no value
    assert "StudyDescription" not in study  # not asked for


def test_study_root_open_ranges_and_single_character_wildcards(archive: Archive) -> None:
    older = findscu(archive.dimse, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=-20231231", "StudyInstanceUID")
    assert [s.StudyInstanceUID for s in older] == [STUDY_B]
    both = findscu(archive.dimse, "-S", "QueryRetrieveLevel=STUDY", "PatientName=?oe^*", "StudyInstanceUID")
    assert {s.StudyInstanceUID for s in both} == {STUDY_A, STUDY_B}


def test_series_level_within_a_study(archive: Archive) -> None:
    series = findscu(archive.dimse, "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY_A}",
                     "SeriesInstanceUID", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances")
    by_uid = {s.SeriesInstanceUID: s for s in series}
    assert set(by_uid) == {SERIES_A1, SERIES_A2}
    assert by_uid[SERIES_A1].NumberOfSeriesRelatedInstances == 3 and by_uid[SERIES_A2].SeriesNumber == 2
    assert by_uid[SERIES_A1].Modality == "CT"


def test_image_level_with_a_uid_list(archive: Archive) -> None:
    wanted = archive.sops_a1[:2]
    images = findscu(archive.dimse, "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY_A}",
                     f"SeriesInstanceUID={SERIES_A1}", f"SOPInstanceUID={chr(92).join(wanted)}",
                     "SOPClassUID", "InstanceNumber")
    assert sorted(i.SOPInstanceUID for i in images) == sorted(wanted)
    assert all(i.SOPClassUID == CTImageStorage for i in images)


def test_patient_root_series_and_image_levels(archive: Archive) -> None:
    series = findscu(archive.dimse, "-P", "QueryRetrieveLevel=SERIES", "PatientID=P1",
                     f"StudyInstanceUID={STUDY_A}", "SeriesInstanceUID", "NumberOfSeriesRelatedInstances")
    assert {s.SeriesInstanceUID: int(s.NumberOfSeriesRelatedInstances) for s in series} == {SERIES_A1: 3, SERIES_A2: 2}
    images = findscu(archive.dimse, "-P", "QueryRetrieveLevel=IMAGE", "PatientID=P1", f"StudyInstanceUID={STUDY_A}",
                     f"SeriesInstanceUID={SERIES_A1}", "SOPInstanceUID", "InstanceNumber")
    assert sorted(i.SOPInstanceUID for i in images) == sorted(archive.sops_a1)
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2, 3]
    assert all(i.QueryRetrieveLevel == "IMAGE" for i in images)


def test_image_level_without_higher_keys_is_matched_relationally(archive: Archive) -> None:
    (image,) = findscu(archive.dimse, "-S", "QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={archive.sops_a1[1]}",
                       "StudyInstanceUID", "SeriesInstanceUID")
    assert (image.StudyInstanceUID, image.SeriesInstanceUID) == (STUDY_A, SERIES_A1)


def test_a_query_matching_nothing_gets_only_the_final_success(archive: Archive) -> None:
    assert findscu(archive.dimse, "-S", "QueryRetrieveLevel=STUDY", "PatientName=Nobody*", "StudyInstanceUID") == []


def _find(port: int, model: str, identifier: Dataset) -> list[tuple[int, Dataset | None]]:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(model)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="TESSEL")
    assert assoc.is_established
    try:
        return [(int(status.Status), ds) for status, ds in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


def test_study_root_has_no_patient_level(archive: Archive) -> None:
    ident = Dataset()
    ident.QueryRetrieveLevel = "PATIENT"
    ident.PatientID = ""
    ((status, _),) = _find(archive.dimse.port, StudyRootQueryRetrieveInformationModelFind, ident)
    assert status == 0xA900


def test_an_identifier_without_a_level_is_refused(archive: Archive) -> None:
    ident = Dataset()
    ident.PatientID = "P1"
    ((status, _),) = _find(archive.dimse.port, PatientRootQueryRetrieveInformationModelFind, ident)
    assert status == 0xA900


def test_non_ascii_names_come_back_in_utf8(dimse: Dimse, tmp_path: Path) -> None:
    path = make_instance(tmp_path / "u.dcm", study="1.2.3.77", series="1.2.3.77.1", patient_name="Müller^Jörg",
                         extra={"SpecificCharacterSet": "ISO_IR 100"})
    dimse.store(path)
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.PatientName = "M*"
    ident.StudyInstanceUID = ""
    results = _find(dimse.port, StudyRootQueryRetrieveInformationModelFind, ident)
    (found,) = [ds for status, ds in results if status == 0xFF00 and ds is not None]
    assert str(found.PatientName) == "Müller^Jörg"


def test_find_on_the_storing_association_sees_what_it_stored(dimse: Dimse, tmp_path: Path) -> None:
    ds = dcmread(make_instance(tmp_path / "x.dcm", study="1.2.3.88", series="1.2.3.88.1"))
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.SOPInstanceUID = ds.SOPInstanceUID
        found = [r for s, r in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind)
                 if s.Status == 0xFF00]
        assert len(found) == 1
    finally:
        assoc.release()
