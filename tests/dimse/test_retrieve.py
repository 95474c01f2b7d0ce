"""C-GET (getscu) and C-MOVE (movescu to a storescp registered with `tessel ae add`)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (MRImageStorage, StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove)

from tessel.cli.main import main
from tessel.demo.synthetic import write_mr_series
from tests.dimse.conftest import Dimse, free_port, running_dimse
from tests.factory import make_series

STUDY, SERIES_1, SERIES_2 = "1.2.826.0.1.3680043.10.1437.10", "1.2.826.0.1.3680043.10.1437.10.1", \
    "1.2.826.0.1.3680043.10.1437.10.2"


@dataclass
class Archive:
    dimse: Dimse
    originals: dict[str, Path]  # SOP Instance UID -> the file that was stored
    lossy: dict[str, Path]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    tmp = tmp_path_factory.mktemp("retrieve")
    with running_dimse(tmp) as dimse:
        s1 = make_series(tmp / "s1", 3, study=STUDY, series=SERIES_1, rows=32, columns=24)
        s2 = make_series(tmp / "s2", 2, study=STUDY, series=SERIES_2, series_number=2, rows=32, columns=24)
        dimse.store(*s1, *s2)
        lossy = write_mr_series(tmp / "lossy", slices=2, size=64)
        for path in lossy:
            ds = dcmread(path)
            ds.compress(JPEG2000, j2k_cr=[10], generate_instance_uid=False)
            ds.save_as(path, enforce_file_format=True)
        dimse.store(*lossy, args=("-xw",))
        yield Archive(dimse, {str(dcmread(p).SOPInstanceUID): p for p in s1 + s2},
                      {str(dcmread(p).SOPInstanceUID): p for p in lossy})


def received(folder: Path) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (dcmread(p) for p in folder.iterdir() if p.is_file())}


def assert_same_pixels(got: Dataset, original: Path) -> None:
    assert np.array_equal(got.pixel_array, dcmread(original).pixel_array)


def getscu(dimse: Dimse, folder: Path, *args: str) -> dict[str, Dataset]:
    folder.mkdir(parents=True, exist_ok=True)
    dimse.run("getscu", *args, "-od", str(folder))
    return received(folder)


def test_getscu_a_study_sends_every_instance_with_its_pixels(archive: Archive, tmp_path: Path) -> None:
    got = getscu(archive.dimse, tmp_path / "get", "-S", "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={STUDY}")
    assert set(got) == set(archive.originals)
    for sop, ds in got.items():
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # what getscu prefers by default
        assert_same_pixels(ds, archive.originals[sop])


def test_getscu_at_series_image_and_patient_level(archive: Archive, tmp_path: Path) -> None:
    series = getscu(archive.dimse, tmp_path / "series", "-S", "-k", "QueryRetrieveLevel=SERIES",
                    "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={SERIES_2}")
    assert len(series) == 2 and all(ds.SeriesInstanceUID == SERIES_2 for ds in series.values())
    sop = sorted(archive.originals)[0]
    image = getscu(archive.dimse, tmp_path / "image", "-S", "-k", "QueryRetrieveLevel=IMAGE",
                   "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={dcmread(archive.originals[sop]).SeriesInstanceUID}",
                   "-k", f"SOPInstanceUID={sop}")
    assert list(image) == [sop]
    patient = getscu(archive.dimse, tmp_path / "patient", "-P", "-k", "QueryRetrieveLevel=PATIENT",
                     "-k", "PatientID=P1")
    assert set(patient) == set(archive.originals)


def test_getscu_preferring_j2k_lossless_gets_a_transcode_with_the_same_pixels(archive: Archive,
                                                                               tmp_path: Path) -> None:
    got = getscu(archive.dimse, tmp_path / "j2k", "+xv", "-S", "-k", "QueryRetrieveLevel=SERIES",
                 "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={SERIES_1}")
    assert len(got) == 3
    for sop, ds in got.items():
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert_same_pixels(ds, archive.originals[sop])


def test_getscu_preferring_a_lossy_syntax_gets_every_instance_uncompressed(archive: Archive,
                                                                            tmp_path: Path) -> None:
    # One context per SOP class, J2K lossy first: tessel picks uncompressed, which it can send
    # for every instance (it cannot make lossy codestreams from lossless frames).
    got = getscu(archive.dimse, tmp_path / "lossy", "+xw", "-S", "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={STUDY}")
    assert set(got) == set(archive.originals)
    assert {ds.file_meta.TransferSyntaxUID for ds in got.values()} == {ExplicitVRLittleEndian}


def _c_get(port: int, identifier: Dataset,
           contexts: list[tuple[str, str]]) -> tuple[list[tuple[int, Dataset | None]], list[Dataset]]:
    """A pynetdicom C-GET SCU proposing one storage context per (SOP class, syntax)."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    roles = [build_role(c, scp_role=True) for c in dict.fromkeys(c for c, _ in contexts)]
    got: list[Dataset] = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        got.append(ds)
        return 0x0000

    assoc = ae.associate("127.0.0.1", port, ae_title="TESSEL", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        statuses = [(int(s.Status), i) for s, i in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)]
    finally:
        assoc.release()
    return statuses, got


def test_c_get_sends_lossy_instances_as_stored_when_that_syntax_was_accepted(archive: Archive) -> None:
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = dcmread(next(iter(archive.lossy.values()))).StudyInstanceUID
    statuses, got = _c_get(archive.dimse.port, ident, [(MRImageStorage, JPEG2000),
                                                       (MRImageStorage, ExplicitVRLittleEndian)])
    assert statuses[-1][0] == 0x0000
    assert {str(ds.SOPInstanceUID) for ds in got} == set(archive.lossy)
    for ds in got:
        assert ds.file_meta.TransferSyntaxUID == JPEG2000
        original = dcmread(archive.lossy[str(ds.SOPInstanceUID)])
        assert list(generate_frames(ds.PixelData, number_of_frames=1)) == \
            list(generate_frames(original.PixelData, number_of_frames=1))  # the codestreams as sent


def test_c_get_counts_a_sub_operation_it_cannot_send_as_failed(archive: Archive) -> None:
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = dcmread(next(iter(archive.lossy.values()))).StudyInstanceUID
    # Only J2K lossless is accepted for MR: lossy frames cannot become lossless.
    statuses, got = _c_get(archive.dimse.port, ident, [(MRImageStorage, JPEG2000Lossless)])
    assert got == []
    status, failed = statuses[-1]
    assert status == 0xA702  # every sub-operation failed
    assert failed is not None and sorted(failed.FailedSOPInstanceUIDList) == sorted(archive.lossy)


@contextlib.contextmanager
def running_storescp(archive: Archive, tmp: Path, name: str, *options: str) -> Iterator[Path]:
    """A dcmtk storescp on a free port, registered as `name` in tessel's AE registry; its folder."""
    port, folder = free_port(), tmp / f"received-{name}"
    folder.mkdir()
    proc = subprocess.Popen(["storescp", "-aet", name, *options, "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data_dir = archive.dimse.stores.settings.data_dir
    try:
        assert main(["ae", "add", "--data-dir", str(data_dir), name, "127.0.0.1", str(port)]) == 0
        deadline = time.monotonic() + 30
        while subprocess.run(["echoscu", "-aec", name, "127.0.0.1", str(port)], capture_output=True).returncode:
            assert proc.poll() is None, "storescp exited"
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.1)
        yield folder
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        main(["ae", "remove", "--data-dir", str(data_dir), name])


@pytest.fixture
def storescp(archive: Archive, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with running_storescp(archive, tmp_path, "STORESCP") as folder:
        yield "STORESCP", folder


def test_movescu_sends_a_series_to_a_registered_destination(archive: Archive,
                                                            storescp: tuple[str, Path]) -> None:
    name, folder = storescp
    result = archive.dimse.run("movescu", "-S", "-aem", name, "-k", "QueryRetrieveLevel=SERIES",
                               "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={SERIES_1}")
    assert "Final Move Response (Success)" in result.stdout + result.stderr
    got = received(folder)
    assert len(got) == 3
    for sop, ds in got.items():
        assert_same_pixels(ds, archive.originals[sop])


def test_movescu_of_a_whole_study(archive: Archive, storescp: tuple[str, Path]) -> None:
    name, folder = storescp
    archive.dimse.run("movescu", "-S", "-aem", name, "-k", "QueryRetrieveLevel=STUDY",
                      "-k", f"StudyInstanceUID={STUDY}")
    assert set(received(folder)) == set(archive.originals)


def test_movescu_at_patient_and_image_level(archive: Archive, storescp: tuple[str, Path]) -> None:
    name, folder = storescp
    sop = sorted(archive.originals)[0]
    archive.dimse.run("movescu", "-S", "-aem", name, "-k", "QueryRetrieveLevel=IMAGE",
                      "-k", f"StudyInstanceUID={STUDY}",
                      "-k", f"SeriesInstanceUID={dcmread(archive.originals[sop]).SeriesInstanceUID}",
                      "-k", f"SOPInstanceUID={sop}")
    assert set(received(folder)) == {sop}
    archive.dimse.run("movescu", "-P", "-aem", name, "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1")
    assert set(received(folder)) == set(archive.originals)


J2K_ONLY_PROFILE = """
[[TransferSyntaxes]]
[J2KOnly]
TransferSyntax1 = 1.2.840.10008.1.2.4.90
[Implicit]
TransferSyntax1 = 1.2.840.10008.1.2

[[PresentationContexts]]
[J2KContexts]
PresentationContext1 = 1.2.840.10008.5.1.4.1.1.2\\J2KOnly
PresentationContext2 = 1.2.840.10008.5.1.4.1.1.4\\J2KOnly
PresentationContext3 = 1.2.840.10008.1.1\\Implicit

[[Profiles]]
[J2K]
PresentationContexts = J2KContexts
"""


@pytest.fixture
def j2k_only_scp(archive: Archive, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A dcmtk storescp that accepts CT and MR in JPEG 2000 lossless only, registered as J2KONLY."""
    (tmp_path / "j2k.cfg").write_text(J2K_ONLY_PROFILE)
    with running_storescp(archive, tmp_path, "J2KONLY", "-xf", str(tmp_path / "j2k.cfg"), "J2K") as folder:
        yield "J2KONLY", folder


def _c_move(port: int, identifier: Dataset, destination: str) -> tuple[Dataset, Dataset | None]:
    """The final (status, identifier) of a C-MOVE."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="TESSEL")
    try:
        return list(assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove))[-1]
    finally:
        assoc.release()


def test_move_to_a_destination_that_accepts_only_j2k_lossless_transcodes(archive: Archive,
                                                                         j2k_only_scp: tuple[str, Path]) -> None:
    name, folder = j2k_only_scp
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = STUDY
    final, _ = _c_move(archive.dimse.port, ident, name)
    assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == len(archive.originals)
    got = received(folder)
    assert set(got) == set(archive.originals)
    for ds in got.values():
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert_same_pixels(ds, archive.originals[str(ds.SOPInstanceUID)])


def test_lossy_instances_a_destination_cannot_take_count_as_failed(archive: Archive,
                                                                   j2k_only_scp: tuple[str, Path]) -> None:
    name, folder = j2k_only_scp
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = dcmread(next(iter(archive.lossy.values()))).StudyInstanceUID
    final, failed = _c_move(archive.dimse.port, ident, name)
    assert final.Status == 0xA702  # every sub-operation failed: lossy frames cannot become lossless
    assert final.NumberOfFailedSuboperations == len(archive.lossy) and received(folder) == {}
    assert failed is not None and sorted(failed.FailedSOPInstanceUIDList) == sorted(archive.lossy)


def test_move_to_an_unregistered_destination_is_refused(archive: Archive) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.dimse.port, ae_title="TESSEL")
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = STUDY
    try:
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(ident, "NOWHERE",
                                                                 StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()
    assert statuses == [0xA801]


def test_a_retrieve_without_its_unique_key_is_refused(archive: Archive) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.dimse.port, ae_title="TESSEL")
    ident = Dataset()
    ident.QueryRetrieveLevel = "SERIES"
    try:
        # A reachable destination (tessel itself): the refusal comes after pynetdicom associates.
        main(["ae", "add", "--data-dir", str(archive.dimse.stores.settings.data_dir), "SELF", "127.0.0.1",
              str(archive.dimse.port)])
        results = [(int(s.Status), str(s.get("ErrorComment", ""))) for s, _ in
                   assoc.send_c_move(ident, "SELF", StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()
    ((status, comment),) = results
    assert status == 0xA900 and "Series Instance UID" in comment
