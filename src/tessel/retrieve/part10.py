"""Part 10 instances rebuilt from the stored document and frames (WADO-RS, C-GET/C-MOVE).

    instance_part10(stores, datastore_id, study, series, sop)                      # as stored
    instance_part10(..., transfer_syntax="1.2.840.10008.1.2.1")                    # decoded pixels
    for ref, data in study_part10(stores, datastore_id, study, transfer_syntax=...): ...

Attributes come from the document levels (patient, study, series, instance)
through `tessel.dicom.fromjson`; Pixel Data from the frames: encapsulated
(with a Basic Offset Table) for compressed syntaxes, concatenated native bytes
for Explicit/Implicit VR Little Endian. Colour frames stored as HTJ2K with the
reversible colour transform are labelled YBR_RCT when served as stored.
Instances without Pixel Data are always written as Explicit VR Little Endian.
"""

from __future__ import annotations

import io
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom import dcmwrite
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate
from pydicom.tag import BaseTag

from tessel import __version__, codecs
from tessel.blobs import keys
from tessel.codecs import syntaxes as ts
from tessel.dicom import fromjson
from tessel.errors import Unsupported
from tessel.retrieve import pixel_info
from tessel.retrieve.instances import (NATIVE_OUTPUTS, InstanceRef, check_transcodable, instance_node,
                                       load_document, locate, served_photometric, transcode)
from tessel.stores import Stores

__all__ = ["InstanceRef", "instance_part10", "locate", "part10_from_document", "study_part10"]

# A UID under 2.25 (UUID-derived, PS3.5 B.2) naming tessel as the writer of the files it serves.
IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'https://github.com/tessel').int}"
IMPLEMENTATION_VERSION_NAME = f"TESSEL_{__version__}"[:16]
_PIXEL_TAGS = {"PixelData": 0x7FE00010, "FloatPixelData": 0x7FE00008, "DoubleFloatPixelData": 0x7FE00009}
# Elements that describe the source's encoding of Pixel Data, not valid for the rebuilt one.
_DROPPED = frozenset({"ExtendedOffsetTable", "ExtendedOffsetTableLengths", "DataSetTrailingPadding",
                      "FileMetaInformationGroupLength"})


def instance_part10(stores: Stores, datastore_id: str, study_uid: str, series_uid: str, sop_uid: str, *,
                    transfer_syntax: str | None = None, image_set_id: str | None = None) -> bytes:
    """One instance as Part 10 bytes: `transfer_syntax` None or '*' = as stored; Unsupported if
    the frames cannot be produced in it."""
    (ref,) = locate(stores.catalog, datastore_id, study_uid, series_uid, sop_uid, image_set_id=image_set_id)
    return part10_from_document(stores, datastore_id, load_document(stores, datastore_id, ref), ref,
                                transfer_syntax=transfer_syntax)


def study_part10(stores: Stores, datastore_id: str, study_uid: str, series_uid: str | None = None, *,
                 transfer_syntax: str | None = None, image_set_id: str | None = None,
                 refs: list[InstanceRef] | None = None) -> Iterator[tuple[InstanceRef, str, bytes]]:
    """Every instance of a study (or of one series), one at a time: (ref, its transfer syntax,
    Part 10 bytes).

    Checks that each can be produced in `transfer_syntax` before the first is yielded, so a
    multipart response fails (406) before it starts.
    """
    if refs is None:  # `refs`: already located (and left to what the caller may read)
        refs = locate(stores.catalog, datastore_id, study_uid, series_uid, image_set_id=image_set_id)
    if transfer_syntax not in (None, "*"):
        for ref in refs:
            node = instance_node(load_document(stores, datastore_id, ref), ref)
            info = pixel_info(node)
            if info is not None and node.get("ImageFrames"):
                check_transcodable(info, _stored(ref, node), transfer_syntax)
    for ref in refs:
        doc = load_document(stores, datastore_id, ref)
        target = output_transfer_syntax(instance_node(doc, ref), ref, transfer_syntax)
        yield ref, target, part10_from_document(stores, datastore_id, doc, ref, transfer_syntax=transfer_syntax)


def _stored(ref: InstanceRef, node: dict[str, Any]) -> str:
    return str(node.get("StoredTransferSyntaxUID") or ref.stored_transfer_syntax_uid or ts.HTJ2K_LOSSLESS_RPCL)


def output_transfer_syntax(node: dict[str, Any], ref: InstanceRef, requested: str | None) -> str:
    """The syntax an instance is written in for a request (None/'*' = as stored)."""
    info = pixel_info(node)
    if info is None or not node.get("ImageFrames"):
        return ts.EXPLICIT_VR_LE  # no Pixel Data: nothing to encode, any syntax is as good
    stored = _stored(ref, node)
    return stored if requested in (None, "*") else requested


def part10_from_document(stores: Stores, datastore_id: str, doc: dict[str, Any], ref: InstanceRef, *,
                         transfer_syntax: str | None = None) -> bytes:
    node = instance_node(doc, ref)
    target = output_transfer_syntax(node, ref, transfer_syntax)
    info = pixel_info(node)
    image_frames = node.get("ImageFrames") or []
    if info is None or not image_frames:
        return _write(_dataset(stores, datastore_id, doc, ref, node, target), target)
    stored = _stored(ref, node)
    check_transcodable(info, stored, target)
    key = (id(stores.blobs), datastore_id, ref.image_set_id, ref.version, ref.sop_instance_uid, target)
    head = HEADS.get(key)
    if head is None:
        ds = _dataset(stores, datastore_id, doc, ref, node, target)
        _describe_pixels(ds, info, stored, target)
        if any(tag > _pixel_tag(info) for tag in ds.keys()):  # elements after Pixel Data: written whole
            frames = [stores.blobs.get(keys.frame(datastore_id, f["ID"])) for f in image_frames]
            _set_pixels(ds, info, stored, target, frames)
            return _write(ds, target)
        head = _write(ds, target)
        HEADS.put(key, head)
    frames = [stores.blobs.get(keys.frame(datastore_id, f["ID"])) for f in image_frames]
    return head + _pixel_element(info, stored, target, frames)


def _dataset(stores: Stores, datastore_id: str, doc: dict[str, Any], ref: InstanceRef, node: dict[str, Any],
             target: str) -> Any:
    """The instance's attributes (Pixel Data left out) and file meta, for writing as `target`."""
    levels = [doc["Patient"]["DICOM"], doc["Study"]["DICOM"],
              doc["Study"]["Series"][ref.series_instance_uid]["DICOM"],
              {k: v for k, v in node["DICOM"].items() if k not in _DROPPED}]
    ds = fromjson.dataset_from_levels(levels, node.get("DICOMVRs") or {},
                                      bulk=lambda bulk_id: stores.blobs.get(keys.bulk(datastore_id, bulk_id)))
    for tag in _PIXEL_TAGS.values():
        if BaseTag(tag) in ds:
            del ds[BaseTag(tag)]
    ds.file_meta = fromjson.file_meta(
        node["DICOM"], TransferSyntaxUID=target,
        MediaStorageSOPClassUID=str(ref.sop_class_uid or node["DICOM"].get("SOPClassUID") or ""),
        MediaStorageSOPInstanceUID=ref.sop_instance_uid, ImplementationClassUID=IMPLEMENTATION_CLASS_UID,
        ImplementationVersionName=IMPLEMENTATION_VERSION_NAME)
    return ds


def _write(ds: Any, target: str) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True, implicit_vr=target == ts.IMPLICIT_VR_LE, little_endian=True)
    return out.getvalue()


class _Heads:
    """Part 10 bytes up to Pixel Data per (image set version, instance, syntax): documents never
    change, and writing ~100 attributes with pydicom cost more than the rest of a whole-instance
    request. An instance is then its head plus the Pixel Data element, written by hand."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            head = self._items.get(key)
            if head is not None:
                self._items.move_to_end(key)
            return head

    def put(self, key: tuple[Any, ...], head: bytes) -> None:
        with self._lock:
            if key in self._items or len(head) > self.max_bytes // 8:
                return
            self._items[key] = head
            self._bytes += len(head)
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


HEADS = _Heads()


def _pixel_tag(info: Any) -> int:
    return _PIXEL_TAGS.get(info.pixel_keyword, 0x7FE00010)


def _pixel_element(info: Any, stored: str, target: str, frames: list[bytes]) -> bytes:
    """The Pixel Data element as pydicom writes it (PS3.5 7.1.2: tag, VR, length; encapsulated:
    undefined length, items, sequence delimiter); Little Endian, explicit VR unless `target` is
    Implicit VR Little Endian."""
    tag = _pixel_tag(info)
    tag_bytes = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if target in NATIVE_OUTPUTS:
        value = _native_pixels(info, stored, frames)
        if target == ts.IMPLICIT_VR_LE:
            return tag_bytes + struct.pack("<I", len(value)) + value
        return tag_bytes + _native_vr(info).encode() + b"\0\0" + struct.pack("<I", len(value)) + value
    value = _encapsulated(info, stored, target, frames)
    return tag_bytes + b"OB\0\0\xff\xff\xff\xff" + value + b"\xfe\xff\xdd\xe0\0\0\0\0"


def _native_vr(info: Any) -> str:
    return {"FloatPixelData": "OF", "DoubleFloatPixelData": "OD"}.get(
        info.pixel_keyword, "OW" if info.bits_allocated > 8 else "OB")


def _encapsulated(info: Any, stored: str, target: str, frames: list[bytes]) -> bytes:
    encoded = [transcode(f, info, stored, target) for f in frames]
    row = ts.syntax(target)
    video = row is not None and row.layout is ts.Layout.VIDEO
    return encapsulate(encoded, has_bot=not video and len(encoded) > 1)


def _describe_pixels(ds: Any, info: Any, stored: str, target: str) -> None:
    """The attributes that say how the served Pixel Data is encoded."""
    ds.PhotometricInterpretation = served_photometric(info, stored, target)
    if info.samples_per_pixel > 1 and (target in NATIVE_OUTPUTS or target != stored
                                       or stored != info.transfer_syntax_uid):
        ds.PlanarConfiguration = 0  # decoded and stored frames are colour-by-pixel


def _set_pixels(ds: Any, info: Any, stored: str, target: str, frames: list[bytes]) -> None:
    tag = BaseTag(_pixel_tag(info))
    if target in NATIVE_OUTPUTS:
        ds[tag] = DataElement(tag, _native_vr(info), _native_pixels(info, stored, frames))
    else:
        ds[tag] = DataElement(tag, "OB", _encapsulated(info, stored, target, frames), is_undefined_length=True)


def _native_pixels(info: Any, stored: str, frames: list[bytes]) -> bytes:
    if stored == ts.EXPLICIT_VR_LE and info.bits_allocated != 1:
        data = b"".join(frames)  # stored natively already, in the decoded layout
    elif info.bits_allocated == 1:
        # 1-bit frames are packed one after the other without padding between them (PS3.5 8.1.1).
        bits = [np.asarray(codecs.decode_stored(f, info, stored)).reshape(-1) for f in frames]
        data = np.packbits(np.concatenate(bits), bitorder="little").tobytes()
    else:
        data = b"".join(transcode(f, info, stored, ts.EXPLICIT_VR_LE) for f in frames)
    return data + b"\x00" if len(data) % 2 else data


def check_part10_syntax(transfer_syntax: str | None) -> None:
    """Unsupported for syntaxes tessel never writes (checked before any work)."""
    if transfer_syntax in (None, "*") or ts.is_known_syntax(transfer_syntax):
        return
    raise Unsupported(f"unknown transfer syntax {transfer_syntax}", transfer_syntax_uid=transfer_syntax)
