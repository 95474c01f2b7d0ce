"""Whole instances are written as a kept head (attributes, by pydicom) plus a Pixel Data element
written by hand: byte for byte what pydicom writes for the whole instance."""

from __future__ import annotations

from pathlib import Path

import io

import pydicom
import pytest

from tessel.blobs import keys
from tessel.codecs import syntaxes as ts
from tessel.demo import synthetic
from tessel.ingest import store_instances
from tessel.lifecycle.datastores import create_datastore
from tessel.retrieve import part10
from tessel.retrieve.instances import load_document, locate
from tessel.stores import Stores
from tests.factory import make_series

SYNTAXES = [ts.EXPLICIT_VR_LE, ts.IMPLICIT_VR_LE, None, ts.HTJ2K_LOSSLESS, ts.J2K_LOSSLESS]


def whole(stores: Stores, datastore_id: str, ref: part10.InstanceRef, syntax: str | None) -> bytes:
    """The instance written in one piece by pydicom (what part10 did before keeping heads)."""
    doc = load_document(stores, datastore_id, ref)
    node = part10.instance_node(doc, ref)
    target = part10.output_transfer_syntax(node, ref, syntax)
    info = part10.pixel_info(node)
    stored = part10._stored(ref, node)
    ds = part10._dataset(stores, datastore_id, doc, ref, node, target)
    part10._describe_pixels(ds, info, stored, target)
    frames = [stores.blobs.get(keys.frame(datastore_id, f["ID"])) for f in node["ImageFrames"]]
    part10._set_pixels(ds, info, stored, target, frames)
    return part10._write(ds, target)


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s or "as-stored")
def test_kept_heads_give_what_pydicom_writes_whole(stores: Stores, tmp_path: Path, syntax: str | None) -> None:
    datastore_id = create_datastore(stores, name="heads").id
    paths = make_series(tmp_path / "ct", 1, frames=3) + synthetic.write_us_clip(tmp_path / "us", frames=2,
                                                                                rows=64, columns=80)
    store_instances(stores, datastore_id, [p.read_bytes() for p in paths])
    for path in paths:
        source = pydicom.dcmread(path, stop_before_pixels=True)
        (ref,) = locate(stores.catalog, datastore_id, source.StudyInstanceUID, source.SeriesInstanceUID,
                        source.SOPInstanceUID)
        doc = load_document(stores, datastore_id, ref)
        first = part10.part10_from_document(stores, datastore_id, doc, ref, transfer_syntax=syntax)  # makes the head
        again = part10.part10_from_document(stores, datastore_id, doc, ref, transfer_syntax=syntax)  # uses it
        assert first == again == whole(stores, datastore_id, ref, syntax)
        served = pydicom.dcmread(io.BytesIO(again))
        assert served.file_meta.TransferSyntaxUID == part10.output_transfer_syntax(
            part10.instance_node(doc, ref), ref, syntax)
        assert served.SOPInstanceUID == source.SOPInstanceUID
