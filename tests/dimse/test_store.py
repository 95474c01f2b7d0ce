"""C-ECHO and C-STORE with dcmtk (echoscu, storescu) and pynetdicom SCUs."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, _STORAGE_CLASSES

from tessel.codecs.syntaxes import HTJ2K_LOSSLESS_RPCL
from tessel.demo.synthetic import write_mr_series, write_us_clip
from tessel.ingest.spool import FOLDER, Kind, Spool
from tessel.lifecycle.datastores import create_datastore
from tests.dimse.archive import frames_by_instance, image_sets, import_folder, instances, unreferenced_frames
from tests.dimse.compare import VARIANTS, Compared, assert_same_as_imported, stored_in_variants
from tests.dimse.conftest import Dimse, running_dimse, start_dimse
from tests.factory import make_instance, make_series


def test_echoscu_is_answered(dimse: Dimse) -> None:
    result = dimse.run("echoscu")
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


# -- the same series sent in several transfer syntaxes, against one import job -----------------

@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    tmp = tmp_path_factory.mktemp("variants")
    with stored_in_variants(tmp, make_series(tmp / "in", 3, rows=48, columns=40)) as compared:
        assert compared.edited["JPLL"] == {"DerivationDescription"}  # dcmcjpeg says what it did
        assert compared.edited["XB"] == set()
        yield compared


@pytest.mark.parametrize("aet", list(VARIANTS))
def test_storescu_series_is_stored_as_an_import_job_stores_it(variants: Compared, aet: str) -> None:
    assert_same_as_imported(variants, aet, VARIANTS[aet][1])


COMPRESSED = {"RLE": (RLELossless, "-xr"), "J2KR": (JPEG2000Lossless, "-xv"), "J2KI": (JPEG2000, "-xw")}


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    tmp = tmp_path_factory.mktemp("compressed")
    for seed, (aet, (syntax, _option)) in enumerate(COMPRESSED.items()):  # a series (and UIDs) per seed
        if syntax == JPEG2000:  # lossy: the demo builders write lossless only
            for path in write_mr_series(tmp / "in" / aet, slices=2, size=64, seed=seed):
                ds = dcmread(path)
                ds.compress(JPEG2000, j2k_cr=[10], generate_instance_uid=False)
                ds.save_as(path, enforce_file_format=True)
        else:
            write_mr_series(tmp / "in" / aet, slices=2, size=64, transfer_syntax=syntax, seed=seed)
    with running_dimse(tmp) as dimse:
        datastores = {aet: create_datastore(dimse.stores, aet.lower()).id for aet in COMPRESSED}
        dimse.allow({aet: {"datastore": aet.lower()} for aet in COMPRESSED})
        for aet, (_syntax, option) in COMPRESSED.items():  # each folder as it is (-R: only its syntax)
            dimse.store(*sorted((tmp / "in" / aet).glob("*.dcm")), args=(option, "-R"), aet=aet)
        reference = create_datastore(dimse.stores, "imported")
        assert import_folder(dimse.stores, reference.id, tmp / "in").failed == 0
        sent = {aet: {str(dcmread(p).SOPInstanceUID) for p in (tmp / "in" / aet).glob("*.dcm")} for aet in COMPRESSED}
        yield Compared(dimse, reference.id, datastores, sent)


@pytest.mark.parametrize("aet", list(COMPRESSED))
def test_compressed_files_are_sent_as_they_are_and_stored_as_imported(compressed: Compared, aet: str) -> None:
    syntax = COMPRESSED[aet][0]
    stores = compressed.dimse.stores
    got = instances(stores, compressed.datastores[aet])
    assert {i["instance"]["DICOM"]["TransferSyntaxUID"] for i in got.values()} == {syntax}  # sent as they are
    stored = {i["instance"].get("StoredTransferSyntaxUID") for i in got.values()}
    assert stored == ({JPEG2000} if syntax == JPEG2000 else {HTJ2K_LOSSLESS_RPCL})  # lossy never re-encoded
    assert_same_as_imported(compressed, aet, syntax)


# -- single cases ----------------------------------------------------------------------------

def test_a_multiframe_colour_clip_is_stored(dimse: Dimse, tmp_path: Path) -> None:
    (clip,) = write_us_clip(tmp_path / "us", frames=4, rows=64, columns=80)
    dimse.store(clip)
    (frames,) = frames_by_instance(dimse.stores, dimse.datastore_id).values()
    assert len(frames) == 4


def test_a_series_on_one_association_makes_one_version(dimse: Dimse, tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", 30, rows=16, columns=16)
    dimse.store(*files)
    (image_set,) = image_sets(dimse.stores, dimse.datastore_id)
    assert image_set.latest_version == 1
    assert image_set.number_of_instances == 30
    assert dimse.server.queue.pending() == 0
    spool = dimse.stores.settings.data_dir / FOLDER
    deadline = time.monotonic() + 10  # the segment goes once the association has ended, too
    while list(spool.glob("*.seg")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(spool.glob("*.seg")) == []


def test_storing_the_same_series_twice_changes_nothing(dimse: Dimse, tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", 3, rows=16, columns=16)
    dimse.store(*files)
    dimse.store(*files)
    (image_set,) = image_sets(dimse.stores, dimse.datastore_id)
    assert image_set.latest_version == 1


def _scu(*contexts: str) -> AE:
    ae = AE(ae_title="PYSCU")
    for context in contexts or (CTImageStorage, MRImageStorage):
        ae.add_requested_context(context)
    return ae


def test_a_corrupt_instance_fails_with_a_reason_and_the_association_and_store_stay_healthy(
        dimse: Dimse, tmp_path: Path) -> None:
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
        assert failed.Status == 0xC000
        assert str(failed.ErrorComment).startswith("Pixel Data holds 1024 bytes, but Rows x Columns")
        assert assoc.is_established
        assert assoc.send_c_store(dcmread(after)).Status == 0x0000
    finally:
        assoc.release()
    assert dimse.server.flush()
    stored = frames_by_instance(dimse.stores, dimse.datastore_id)
    assert set(stored) == {str(dcmread(good).SOPInstanceUID), str(dcmread(after).SOPInstanceUID)}
    assert unreferenced_frames(dimse.stores, dimse.datastore_id) == []


def test_storescu_gets_the_failure_of_a_corrupt_file_and_goes_on(dimse: Dimse, tmp_path: Path) -> None:
    first, last = make_series(tmp_path / "in", 2, rows=16, columns=16)
    bad = dcmread(make_instance(tmp_path / "bad.dcm", study="1.2.3.5", series="1.2.3.5.1", rows=16, columns=16))
    bad.Rows = 64  # Pixel Data now holds a quarter of what Rows x Columns needs
    bad.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    result = dimse.store(first, tmp_path / "bad.dcm", last, args=("-nh", "-d"), check=False)
    out = result.stdout + result.stderr
    assert out.count("Received Store Response (Success)") + out.count("DIMSE Status                  : 0x0000") >= 2
    assert "0xc000: Error: Cannot understand" in out
    assert "Pixel Data holds 512 bytes, but Rows x Columns" in out  # the Error Comment
    assert set(frames_by_instance(dimse.stores, dimse.datastore_id)) == {
        str(dcmread(first).SOPInstanceUID), str(dcmread(last).SOPInstanceUID)}
    assert unreferenced_frames(dimse.stores, dimse.datastore_id) == []


def test_a_coerced_instance_is_stored_with_warning_b000(dimse: Dimse, tmp_path: Path) -> None:
    ds = dcmread(make_instance(tmp_path / "padded.dcm", study="1.2.3.6", series="1.2.3.6.1", rows=8, columns=8))
    ds.PixelData = ds.PixelData + b"\x00" * 6  # padding after the last frame: ignored, with a warning
    assoc = _scu().associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0xB000
    assert "6 bytes of padding after the last frame" in str(status.ErrorComment)
    assert dimse.server.flush()
    assert set(frames_by_instance(dimse.stores, dimse.datastore_id)) == {str(ds.SOPInstanceUID)}


def test_every_storage_sop_class_is_accepted_in_every_syntax_tessel_reads(dimse: Dimse) -> None:
    classes = sorted(set(_STORAGE_CLASSES.values()) | {"1.2.826.0.1.3680043.10.1437.99.1"})  # and a private one
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000]
    accepted: set[tuple[str, str]] = set()
    for start in range(0, len(classes), 120):
        ae = AE(ae_title="PYSCU")
        for index, sop_class in enumerate(classes[start:start + 120]):
            ae.add_requested_context(sop_class, [syntaxes[index % len(syntaxes)]])
        assoc = ae.associate("127.0.0.1", dimse.port, ae_title="TESSEL")
        assert assoc.is_established
        accepted |= {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        assoc.release()
    assert {c for c, _ in accepted} == set(classes)
    assert len(accepted) == len(classes)  # each in the one syntax proposed for it


def test_instances_spooled_before_a_crash_are_committed_at_the_next_start(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", 3, rows=16, columns=16)
    server, stores = start_dimse(tmp_path)
    datastore = create_datastore(stores, "dimse")
    server.stop()
    # What a crash leaves: three acknowledged instances in a segment, and a record cut short.
    segment = Spool(tmp_path / "data" / FOLDER).open()
    for path in files:
        segment.append(Kind.RAW, datastore.id, path.read_bytes())
    segment.close()
    with open(segment.path, "ab") as f:
        f.write(b"TSR1R" + datastore.id.encode() + (1000).to_bytes(8, "little") + b"\x00" * 10)
    server, stores = start_dimse(tmp_path)
    try:
        assert server.flush()
        assert set(frames_by_instance(stores, datastore.id)) == {str(dcmread(p).SOPInstanceUID) for p in files}
        assert not segment.path.exists()
    finally:
        server.stop()
        stores.close()


def test_dicom_sockets_are_tcp_nodelay(dimse: Dimse) -> None:
    assoc = _scu().associate("127.0.0.1", dimse.port, ae_title="TESSEL")
    try:
        assert dimse.server.ae is not None
        (served,) = dimse.server.ae.active_associations
        sock = served.dul.socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assoc.release()
