"""Image set document values back to DICOM: the inverse of `tessel.dicom.document`.

Each value becomes a raw Explicit VR Little Endian element (pydicom
`RawDataElement`), encoded here byte for byte, so IS/DS keep their original
strings and numbers their exact values; sequences become pydicom Sequences of
such datasets. pydicom writes raw elements as they are, and converts them
itself when asked for another transfer syntax.

Text is encoded in the instance's Specific Character Set; if a value cannot be
(the document holds Unicode, so an edit may have brought in any character), the
whole dataset is re-encoded as UTF-8 with Specific Character Set ISO_IR 192.

>>> ds = dataset_from_attributes({"PatientName": "Doe^John", "Rows": 512, "SliceThickness": "1.250 ",
...                               "ImageType": ["ORIGINAL", "PRIMARY"], "00091001": "AQA="},
...                              {"00091001": "UN"})
>>> ds.get_item("SliceThickness").value, str(ds.PatientName), ds.Rows, list(ds.ImageType), str(ds[0x00091001].VR)
(b'1.250 ', 'Doe^John', 512, ['ORIGINAL', 'PRIMARY'], 'UN')
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Mapping, Sequence as AbcSequence
from typing import Any

from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes, default_encoding, encode_string
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from tessel.dicom import charsets
from tessel.dicom.vrs import BINARY_VRS, NUMBER_FORMATS, is_private, resolve_vr

Bulk = Callable[[str], bytes]
UTF8 = "ISO_IR 192"
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
_NO_SPLIT_VRS = frozenset({"ST", "LT", "UT", "UR"})


class _NeedsUtf8(Exception):
    """A text value is not encodable in the declared character set."""


def tag_of(key: str) -> int | None:
    """The tag of a document key: a keyword or 8 hex digits."""
    if len(key) == 8:
        try:
            return int(key, 16)
        except ValueError:
            pass
    tag = tag_for_keyword(key)
    return int(tag) if tag is not None else None


def vr_of(tag: int, key: str, value: Any, vrs: Mapping[str, str], pixel_representation: int = 0) -> str:
    """The VR to write a document value with: recorded (private/unknown), else the dictionary's,
    with ambiguous ones ('US or SS', 'OB or OW', ...) settled by the value itself."""
    recorded = vrs.get(key) or vrs.get(f"{tag:08X}")
    if recorded:
        return recorded
    if is_private(tag):
        return "LO" if 0x10 <= tag & 0xFFFF <= 0xFF else "UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if " or " not in vr:
        return vr
    if isinstance(value, dict) or isinstance(value, str):  # base64 or bulk data: bytes
        return "OB" if vr.startswith("OB") else "OW"
    numbers = value if isinstance(value, list) else [value]
    signed = pixel_representation == 1 or any(isinstance(n, int) and n < 0 for n in numbers)
    if "SS" in vr and signed and all(not isinstance(n, int) or n <= 0x7FFF for n in numbers):
        return "SS"  # (a file may hold an unsigned value, say Pixel Padding 63536, beside signed pixels)
    if "US" in vr:
        return "US"
    return resolve_vr(tag, None, pixel_representation=pixel_representation)


class _Encoder:
    def __init__(self, vrs: Mapping[str, str], bulk: Bulk | None, force_utf8: bool) -> None:
        self.vrs = vrs
        self.bulk = bulk
        self.force_utf8 = force_utf8

    def dataset(self, attrs: Mapping[str, Any], parent: list[str] | None, pixel_representation: int = 0) -> Dataset:
        """`parent`: the encodings of the enclosing dataset (None at the top level)."""
        own = attrs.get("SpecificCharacterSet")
        if self.force_utf8 and (own is not None or parent is None):
            own = UTF8
        if own:
            encodings = charsets.encodings_for(own)
        else:
            encodings = parent if parent is not None else [default_encoding]
        pr = attrs.get("PixelRepresentation")
        pixel_representation = pr if isinstance(pr, int) else pixel_representation
        elements: dict[BaseTag, Any] = {}
        for key, value in attrs.items():
            tag = tag_of(key)
            if tag is None or tag >> 16 == 0x0002 or key == "DICOMVRs":
                continue  # unknown keyword, or file meta (see file_meta)
            if key == "SpecificCharacterSet" and self.force_utf8:
                value = UTF8
            vr = vr_of(tag, key, value, self.vrs, pixel_representation)
            btag = BaseTag(tag)
            if vr == "SQ":
                items = [self.dataset(item, encodings, pixel_representation) for item in value or ()
                         if isinstance(item, Mapping)]
                elements[btag] = DataElement(btag, "SQ", Sequence(items))
                continue
            if isinstance(value, Mapping):  # {"BulkDataID", "Length"}: the value lives apart
                if self.bulk is None or "BulkDataID" not in value:
                    continue
                raw = self.bulk(str(value["BulkDataID"]))
            else:
                raw = self.value(vr, value, encodings)
            elements[btag] = RawDataElement(btag, vr, len(raw), raw, 0, False, True, True, False)
        ds = Dataset(elements)
        # What pydicom derives from the dataset itself, so that writing it as Explicit VR LE
        # keeps the raw elements as they are instead of converting them.
        declared = convert_encodings([own] if isinstance(own, str) else list(own)) if own else None
        ds.set_original_encoding(False, True, declared or (parent if parent is not None else default_encoding))
        return ds

    def value(self, vr: str, value: Any, encodings: list[str]) -> bytes:
        if value is None:
            return b""
        if vr in BINARY_VRS:
            raw = base64.b64decode(value) if isinstance(value, str) else b""
            return raw + b"\x00" if len(raw) % 2 else raw
        if vr in NUMBER_FORMATS:
            numbers = [_number(v) for v in (value if isinstance(value, list) else [value])]
            return struct.pack(f"<{len(numbers)}{NUMBER_FORMATS[vr]}", *numbers)
        if vr == "AT":
            tags = value if isinstance(value, list) else [value]
            return b"".join(struct.pack("<HH", int(t, 16) >> 16, int(t, 16) & 0xFFFF) for t in tags)
        values = value if isinstance(value, list) else [value]
        texts = ["" if v is None else str(v) for v in values]
        if vr in _NO_SPLIT_VRS:
            texts = ["\\".join(texts)]
        encoded = b"\\".join(self.text(vr, t, encodings) for t in texts)
        if len(encoded) % 2:
            encoded += b"\x00" if vr == "UI" else b" "
        return encoded

    def text(self, vr: str, text: str, encodings: list[str]) -> bytes:
        if text.isascii():
            return text.encode("ascii")
        if not _encodable(text.replace("^", "").replace("=", "") if vr == "PN" else text, encodings):
            raise _NeedsUtf8()
        if vr == "PN":
            encoded = bytes(PersonName(text).encode(encodings))
            back = str(PersonName(encoded, encodings))
        else:
            encoded = encode_string(text, encodings)
            back = decode_bytes(encoded, encodings, TEXT_VR_DELIMS if vr in ("LO", "SH", "UC") else set())
        if back != text:  # pydicom writes some ISO 2022 sets (IR 58) without their escape sequences
            raise _NeedsUtf8()
        return encoded


def _number(value: Any) -> int | float:
    if isinstance(value, str):
        return float(value)  # "nan", "inf", "-inf": JSON has no such numbers
    return value  # type: ignore[no-any-return]


def _encodable(text: str, encodings: list[str]) -> bool:
    try:
        if len(encodings) == 1:
            text.encode(encodings[0])
            return True
        for char in set(text):
            if not any(_char_ok(char, e) for e in encodings):
                return False
        return True
    except (UnicodeError, LookupError):
        return False


def _char_ok(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
        return True
    except (UnicodeError, LookupError):
        return False


def dataset_from_levels(levels: AbcSequence[Mapping[str, Any]], vrs: Mapping[str, str] | None = None, *,
                        bulk: Bulk | None = None) -> Dataset:
    """One dataset from document levels (patient, study, series, instance DICOM; later ones win).

    Group 0002 keys are left out (see `file_meta`). Bulk values ({"BulkDataID": ...}) are read
    with `bulk(id)`, or dropped when it is None.
    """
    merged: dict[str, Any] = {}
    for attrs in levels:
        merged.update(attrs)
    vrs = vrs or {}
    try:
        return _Encoder(vrs, bulk, False).dataset(merged, None)
    except _NeedsUtf8:
        return _Encoder(vrs, bulk, True).dataset(merged, None)


def dataset_from_attributes(attrs: Mapping[str, Any], vrs: Mapping[str, str] | None = None) -> Dataset:
    """A dataset from one `tessel.catalog.query` result (its "DICOMVRs" entry, if any, gives VRs)."""
    recorded = vrs if vrs is not None else attrs.get("DICOMVRs") or {}
    return dataset_from_levels([{k: v for k, v in attrs.items() if k != "DICOMVRs"}], recorded)


def file_meta(attrs: Mapping[str, Any], **values: str) -> FileMetaDataset:
    """File Meta Information from the document's group 0002 keys, with `values` (keywords) set."""
    meta = FileMetaDataset()
    for key, value in attrs.items():
        tag = tag_of(key)
        if tag is None or tag >> 16 != 0x0002 or tag == 0x00020000 or value is None:
            continue
        vr = vr_of(tag, key, value, {})
        if vr in BINARY_VRS:
            meta[BaseTag(tag)] = DataElement(BaseTag(tag), vr, base64.b64decode(value) if isinstance(value, str)
                                             else b"")
        else:
            meta[BaseTag(tag)] = DataElement(BaseTag(tag), vr, value)
    for keyword, value in values.items():
        setattr(meta, keyword, value)
    return meta
