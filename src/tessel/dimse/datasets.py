"""Wire <-> model for DIMSE: identifiers, query rows, Part 10 bytes, commitment data sets.

pydicom Datasets stay in this package; the services below it see keywords and strings.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from tessel.dicom.fromjson import dataset_from_attributes
from tessel.dimse.status import IdentifierMismatch

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
# Elements of a request identifier that steer the query rather than match anything.
_CONTROL = {0x00080005, 0x00080052}  # Specific Character Set, Query/Retrieve Level
# Return keys that tessel answers itself: Retrieve AE Title, Instance Availability, Retrieve URL.
_ANSWERED = {0x00080054, 0x00080056, 0x00081190}
UTF8 = "ISO_IR 192"


@dataclass(frozen=True, slots=True)
class QueryRequest:
    level: str
    matches: dict[str, str]  # keyword -> DICOM query string (universal keys left out)
    keys: tuple[str, ...]  # every requested keyword, in request order (the return keys)
    availability: bool = False  # Instance Availability (0008,0056) was asked for


def element_text(elem: DataElement) -> str:
    """A request element's value as a DICOM query string ('' for universal matching)."""
    value = elem.value
    if value is None or value == "" or value == b"":
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_scalar_text(v) for v in value)
    return _scalar_text(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def query_request(identifier: Dataset, *, allow_patient_level: bool = True) -> QueryRequest:
    """Read a C-FIND identifier: level, match keys with values, and all return keys."""
    raw_level = identifier.get("QueryRetrieveLevel")
    level = str(raw_level or "").strip().upper()
    if not level:
        raise IdentifierMismatch("the identifier has no Query/Retrieve Level (0008,0052)")
    if level not in LEVELS or (level == "PATIENT" and not allow_patient_level):
        allowed = LEVELS if allow_patient_level else LEVELS[1:]
        raise IdentifierMismatch(f"Query/Retrieve Level {level!r} is not one of {', '.join(allowed)}")
    matches: dict[str, str] = {}
    keys: list[str] = []
    for elem in identifier:
        if elem.tag in _CONTROL or elem.tag.is_private or elem.tag.group in (0x0000, 0x0002):
            continue
        keyword = keyword_for_tag(elem.tag)
        if not keyword:
            continue
        if elem.tag in _ANSWERED:
            continue
        keys.append(keyword)
        if elem.VR == "SQ":
            continue  # sequence matching is optional (PS3.4 C.2.2.2.6); sequences are return keys only
        text = element_text(elem)
        if text.strip(" ") not in ("", "*"):
            matches[keyword] = text
    return QueryRequest(level, matches, tuple(keys), availability="InstanceAvailability" in identifier)


def _non_ascii(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii()
    if isinstance(value, dict):
        return any(_non_ascii(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_ascii(v) for v in value)
    return False


def identifier(row: dict[str, Any], keys: Sequence[str], level: str, retrieve_ae_title: str, *,
               availability: bool = False) -> Dataset:
    """A C-FIND response identifier: every requested key (empty when unknown), level and AE."""
    attrs: dict[str, Any] = {}
    for keyword in keys:
        value = row.get(keyword)
        if isinstance(value, dict) and "BulkDataID" in value:
            value = None  # bulk values are not returned by C-FIND
        attrs[keyword] = value
    if any(_non_ascii(v) for v in attrs.values()):
        attrs["SpecificCharacterSet"] = UTF8
    ds = dataset_from_attributes(attrs, row.get("DICOMVRs") or {})
    ds.QueryRetrieveLevel = level
    ds.RetrieveAETitle = retrieve_ae_title
    if availability:
        ds.InstanceAvailability = "ONLINE"
    return ds


def uid_list(identifier: Dataset, keyword: str) -> list[str]:
    """The UIDs of a retrieve unique key (a single UID or a backslash-separated list)."""
    elem = identifier.get(keyword)
    if elem is None:
        return []
    text = element_text(identifier[keyword])
    return [u.strip().rstrip("\x00") for u in text.replace(",", "\\").split("\\") if u.strip()]


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def part10(dataset: bytes, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
           source_ae_title: str, implementation_class_uid: str, implementation_version_name: str) -> bytes:
    """A received data set as Part 10 bytes: preamble, DICM and the File Meta group before it.

    Written by hand, not with pydicom: it runs before every C-STORE response.

    >>> data = part10(b"", "1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1", "CT01", "1.2.9", "X")
    >>> meta = dcmread(io.BytesIO(data)).file_meta
    >>> meta.TransferSyntaxUID, meta.SourceApplicationEntityTitle, meta.FileMetaInformationGroupLength
    ('1.2.840.10008.1.2.1', 'CT01', 108)
    """
    body = b"".join((
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _text(sop_class_uid, b"\x00")),
        _meta_element(0x0003, b"UI", _text(sop_instance_uid, b"\x00")),
        _meta_element(0x0010, b"UI", _text(transfer_syntax_uid, b"\x00")),
        _meta_element(0x0012, b"UI", _text(implementation_class_uid, b"\x00")),
        _meta_element(0x0013, b"SH", _text(implementation_version_name[:16], b" ")),
        _meta_element(0x0016, b"AE", _text(source_ae_title[:16], b" ")) if source_ae_title else b"",
    ))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"".join((b"\x00" * 128, b"DICM", group_length, body, dataset))


def part10_dataset(data: bytes) -> Dataset:
    """Part 10 bytes -> the Dataset pynetdicom sends (its file meta names the transfer syntax)."""
    return dcmread(io.BytesIO(data))


def unsendable(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """A data set pynetdicom cannot send: yielding it records a failed sub-operation for this UID.

    pynetdicom counts a C-GET/C-MOVE sub-operation as failed (and lists its SOP Instance UID in
    the Failed SOP Instance UID List) when sending raises; a data set without file meta raises.
    """
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


# -- Storage Commitment (PS3.4 J.3) -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CommitmentRequest:
    transaction_uid: str
    references: tuple[tuple[str, str], ...]  # (SOP Class UID, SOP Instance UID)


def commitment_request(info: Dataset | None) -> CommitmentRequest:
    if info is None or not str(info.get("TransactionUID") or "").strip():
        raise IdentifierMismatch("the N-ACTION has no Transaction UID (0008,1195)")
    refs = []
    for item in info.get("ReferencedSOPSequence") or []:
        cls = str(item.get("ReferencedSOPClassUID") or "").strip()
        inst = str(item.get("ReferencedSOPInstanceUID") or "").strip()
        if not inst:
            raise IdentifierMismatch("a Referenced SOP Sequence item has no Referenced SOP Instance UID")
        refs.append((cls, inst))
    if not refs:
        raise IdentifierMismatch("the N-ACTION's Referenced SOP Sequence (0008,1199) is empty")
    return CommitmentRequest(str(info.TransactionUID).strip(), tuple(refs))


def commitment_result(transaction_uid: str, retrieve_ae_title: str, committed: Iterable[tuple[str, str]],
                      failed: Iterable[tuple[str, str, int]]) -> Dataset:
    """The N-EVENT-REPORT Event Information: committed and failed references."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.RetrieveAETitle = retrieve_ae_title
    ok = []
    for cls, inst in committed:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        ok.append(item)
    bad = []
    for cls, inst, reason in failed:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        item.FailureReason = reason
        bad.append(item)
    if ok:
        ds.ReferencedSOPSequence = ok
    if bad:
        ds.FailedSOPSequence = bad
    return ds
