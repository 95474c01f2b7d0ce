"""Encryption at rest: ciphertext on disk, bound to its key, altered bytes detected on read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessel import retrieve
from tessel.blobs import keys
from tessel.blobs.encrypted import EncryptedBlobStore
from tessel.config import Settings
from tessel.errors import Corrupted, InvalidInput
from tessel.ingest import store_instances
from tessel.lifecycle.datastores import create_datastore
from tessel.stores import Stores, open_stores
from tests.factory import make_instance


def test_frames_documents_and_bulk_data_hold_no_plain_pixels_or_names(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "enc")
    path = make_instance(tmp_path / "a.dcm", study="1.2.9.1", series="1.2.9.1.1", patient_name="Zebulon^Quixote",
                         patient_id="MRN-778899", rows=64, columns=64)
    (result,) = store_instances(stores, ds.id, [path.read_bytes()])
    assert result.placement is not None
    doc = retrieve.get_metadata(stores, ds.id, result.placement.image_set_id)
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    frame = retrieve.get_image_frame(stores, ds.id, result.placement.image_set_id, node["ImageFrames"][0]["ID"])
    import pydicom

    raw_pixels = pydicom.dcmread(path).PixelData
    blob_root = Path(stores.settings.resolved_blob_url[len("file://"):])
    files = [p for p in blob_root.rglob("*") if p.is_file()]
    assert len(files) >= 2  # a frame and a metadata document
    for p in files:
        data = p.read_bytes()
        assert data.startswith(b"TSE1"), p
        for secret in (b"Zebulon", b"MRN-778899", raw_pixels[:64], frame.data[:64]):
            assert secret not in data, (p, secret)


def test_a_flipped_byte_in_a_stored_frame_is_detected_and_not_served(stores: Stores, tmp_path: Path) -> None:
    ds = create_datastore(stores, "tamper")
    path = make_instance(tmp_path / "a.dcm", study="1.2.9.2", series="1.2.9.2.1")
    (result,) = store_instances(stores, ds.id, [path.read_bytes()])
    assert result.placement is not None
    image_set_id = result.placement.image_set_id
    doc = retrieve.get_metadata(stores, ds.id, image_set_id)
    (series,) = doc["Study"]["Series"].values()
    (node,) = series["Instances"].values()
    frame_id = node["ImageFrames"][0]["ID"]
    on_disk = Path(stores.settings.resolved_blob_url[len("file://"):]) / keys.frame(ds.id, frame_id)
    data = bytearray(on_disk.read_bytes())
    data[len(data) // 2] ^= 0x01
    on_disk.write_bytes(bytes(data))
    with pytest.raises(Corrupted, match=f"{frame_id}.*failed its integrity check"):
        retrieve.get_image_frame(stores, ds.id, image_set_id, frame_id)


def test_a_blob_moved_to_another_key_fails_authentication(stores: Stores) -> None:
    ds = create_datastore(stores, "swap")
    a, b = keys.frame(ds.id, "aa" * 16), keys.frame(ds.id, "bb" * 16)
    stores.blobs.put(a, b"frame A")
    stores.blobs.put(b, b"frame B")
    inner = stores.blobs.inner  # type: ignore[attr-defined]
    inner.put(b, inner.get(a))  # an attacker swaps the files
    assert stores.blobs.get(a) == b"frame A"
    with pytest.raises(Corrupted):
        stores.blobs.get(b)
    inner.put(b, b"plain bytes someone wrote")
    with pytest.raises(Corrupted):
        stores.blobs.get(b)


def test_keys_outside_a_datastore_are_refused(stores: Stores) -> None:
    with pytest.raises(InvalidInput, match="names no datastore"):
        stores.blobs.put("elsewhere/x", b"x")


def test_encryption_off_stores_new_datastores_as_they_are_and_keeps_reading_old_ones(tmp_path: Path) -> None:
    on = open_stores(Settings(data_dir=tmp_path / "d"))
    try:
        encrypted = create_datastore(on, "before")
        on.blobs.put(f"ds/{encrypted.id}/bulk/00/00/0001", b"sealed")
    finally:
        on.close()
    off = open_stores(Settings(data_dir=tmp_path / "d", encryption_at_rest=False))
    try:
        plain = create_datastore(off, "after")
        off.blobs.put(f"ds/{plain.id}/bulk/00/00/0002", b"as is")
        assert isinstance(off.blobs, EncryptedBlobStore)
        assert off.blobs.inner.get(f"ds/{plain.id}/bulk/00/00/0002") == b"as is"
        assert off.blobs.get(f"ds/{encrypted.id}/bulk/00/00/0001") == b"sealed"
    finally:
        off.close()
