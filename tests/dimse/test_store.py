"""C-ECHO and C-STORE with dcmtk (echoscu, storescu) and a pynetdicom SCU."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000, JPEG2000Lossless, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from tessel.demo.synthetic import write_mr_series, write_us_clip
from tessel.lifecycle.datastores import create_datastore
from tests.dimse.archive import frames_by_instance, image_sets, import_folder
from tests.dimse.conftest import Dimse
from tests.factory import make_instance, make_series


def test_echoscu_is_answered(dimse: Dimse) -> None:
    result = dimse.run("echoscu")
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


@pytest.mark.parametrize("proposal", ["-xe", "-xi", "-xb", "-xd", "-xs"])
def test_storescu_series_is_stored_like_an_import_job_would(dimse: Dimse, tmp_path: Path,
                                                             proposal: str) -> None:
    files = make_series(tmp_path / "in", 4, rows=48, columns=40)
    dimse.store(*files, args=(proposal,))
    assert dimse.server.flush()
    imported = create_datastore(dimse.stores, "imported")
    summary = import_folder(dimse.stores, imported.id, tmp_path / "in")
    assert summary.imported == 4
    over_dimse = frames_by_instance(dimse.stores, dimse.datastore_id)
    assert len(over_dimse) == 4
    assert over_dimse == frames_by_instance(dimse.stores, imported.id)


@pytest.mark.parametrize(("syntax", "proposal"), [(RLELossless, "-xr"), (JPEG2000Lossless, "-xv"),
                                                  (JPEG2000, "-xw")])
def test_compressed_files_are_sent_as_they_are_and_stored(dimse: Dimse, tmp_path: Path, syntax: str,
                                                          proposal: str) -> None:
    if syntax == JPEG2000:  # lossy: the demo builders write lossless only
        files = write_mr_series(tmp_path / "in", slices=3, size=64)
        for path in files:
            ds = dcmread(path)
            ds.compress(JPEG2000, j2k_cr=[10], generate_instance_uid=False)
            ds.save_as(path, enforce_file_format=True)
    else:
        files = write_mr_series(tmp_path / "in", slices=3, size=64, transfer_syntax=syntax)
    assert str(dcmread(files[0]).file_meta.TransferSyntaxUID) == syntax
    result = dimse.store(*files, args=(proposal, "-R"))  # propose only the files' own syntax
    assert "-> Little Endian" not in result.stdout + result.stderr  # sent compressed, not decoded
    assert dimse.server.flush()
    imported = create_datastore(dimse.stores, "imported")
    import_folder(dimse.stores, imported.id, tmp_path / "in")
    over_dimse = frames_by_instance(dimse.stores, dimse.datastore_id)
    assert len(over_dimse) == 3
    assert over_dimse == frames_by_instance(dimse.stores, imported.id)


def test_a_multiframe_colour_clip_is_stored(dimse: Dimse, tmp_path: Path) -> None:
    (clip,) = write_us_clip(tmp_path / "us", frames=4, rows=64, columns=80)
    dimse.store(clip)
    assert dimse.server.flush()
    (frames,) = frames_by_instance(dimse.stores, dimse.datastore_id).values()
    assert len(frames) == 4


def test_a_series_on_one_association_makes_one_version(dimse: Dimse, tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", 30, rows=16, columns=16)
    dimse.store(*files)
    # The release waits for the commit: visible as soon as storescu is done, as one version.
    (image_set,) = image_sets(dimse.stores, dimse.datastore_id)
    assert image_set.latest_version == 1
    assert image_set.number_of_instances == 30
    assert dimse.server.queue.pending() == 0


def _scu() -> AE:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    return ae


def test_a_corrupt_instance_fails_with_a_reason_and_the_association_stays_usable(dimse: Dimse,
                                                                                   tmp_path: Path) -> None:
    good = make_instance(tmp_path / "good.dcm", study="1.2.3.4", series="1.2.3.4.1", instance_number=1)
    after = make_instance(tmp_path / "after.dcm", study="1.2.3.4", series="1.2.3.4.1", instance_number=2, seed=1)
    bad = dcmread(make_instance(tmp_path / "bad.dcm", study="1.2.3.4", series="1.2.3.4.1", instance_number=3,
                                seed=2))
    bad.PixelData = bad.PixelData[: len(bad.PixelData) // 2]  # truncated Pixel Data
    assoc = _scu().associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(dcmread(good)).Status == 0x0000
        failed = assoc.send_c_store(bad)
        assert failed.Status in (0xC000, 0xA900)
        assert "ErrorComment" in failed and "pixel" in str(failed.ErrorComment).lower()
        assert assoc.is_established
        assert assoc.send_c_store(dcmread(after)).Status == 0x0000
    finally:
        assoc.release()
    assert dimse.server.flush()
    stored = frames_by_instance(dimse.stores, dimse.datastore_id)
    assert set(stored) == {str(dcmread(good).SOPInstanceUID), str(dcmread(after).SOPInstanceUID)}


def test_storing_the_same_series_twice_changes_nothing(dimse: Dimse, tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", 3, rows=16, columns=16)
    dimse.store(*files)
    dimse.store(*files)
    (image_set,) = image_sets(dimse.stores, dimse.datastore_id)
    assert image_set.latest_version == 1
