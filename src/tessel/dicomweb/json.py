"""The DICOM JSON Model (PS3.18 F.2): document values -> {"GGGGEEEE": {"vr": ..., "Value": [...]}}.

Person names become {"Alphabetic", "Ideographic", "Phonetic"} objects, IS and DS
numbers, binary values InlineBinary, and bulk data (values stored apart, over
1 MB) a BulkDataURI. Keys are emitted in tag order.

>>> to_dicom_json({"PatientName": "Yamada^Tarou=山田^太郎", "Rows": 512, "SliceThickness": "1.25 "})
... # doctest: +NORMALIZE_WHITESPACE
{'00100010': {'vr': 'PN', 'Value': [{'Alphabetic': 'Yamada^Tarou', 'Ideographic': '山田^太郎'}]},
 '00180050': {'vr': 'DS', 'Value': [1.25]}, '00280010': {'vr': 'US', 'Value': [512]}}
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR

from tessel import documents
from tessel.dicom.fromjson import tag_of, vr_of
from tessel.dicom.vrs import BINARY_VRS

Json = dict[str, Any]
BulkUri = Callable[[str], str]
# Pixel Data is served as frames; the group length describes the source file's meta, not ours.
_SKIPPED = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData", "DICOMVRs",
                      "FileMetaInformationGroupLength"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_first = operator.itemgetter(0)


@functools.lru_cache(maxsize=8192)
def _key(key: str) -> tuple[int, str, str | None] | None:
    """(tag, "GGGGEEEE", dictionary VR if unambiguous) of a document key."""
    tag = tag_of(key)
    if tag is None:
        return None
    try:
        vr: str | None = dictionary_VR(tag)
    except KeyError:
        vr = None
    if vr is not None and " or " in vr:
        vr = None
    return tag, f"{tag:08X}", vr


def to_dicom_json(attrs: Mapping[str, Any], vrs: Mapping[str, str] | None = None, *,
                  bulk_uri: BulkUri | None = None, pixel_representation: int | None = None) -> Json:
    """One dataset in the DICOM JSON Model. `bulk_uri(bulk_id)` names where bulk values are read."""
    vrs = vrs or {}
    if pixel_representation is None:
        pr = attrs.get("PixelRepresentation")
        pixel_representation = pr if isinstance(pr, int) else 0
    entries: list[tuple[str, Json]] = []
    append = entries.append
    for key, value in attrs.items():
        if key in _SKIPPED:
            continue
        info = _key(key)
        if info is None:
            continue  # not an attribute (e.g. an unknown keyword)
        tag, hex_tag, vr = info
        if vr is None or key in vrs:
            vr = vr_of(tag, key, value, vrs, pixel_representation)
        if type(value) is str and value and vr in _PLAIN_TEXT:  # most values: inline, no call
            append((hex_tag, {"vr": vr, "Value": [value]}))
        else:
            append((hex_tag, _element(vr, value, vrs, bulk_uri, pixel_representation)))
    entries.sort(key=_first)  # fixed-width upper-case hex sorts as the tags do
    return dict(entries)


# VRs whose JSON value is the document's string itself (the common case, taken first).
_PLAIN_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})


def _element(vr: str, value: Any, vrs: Mapping[str, str], bulk_uri: BulkUri | None, pr: int) -> Json:
    if type(value) is str and value and vr in _PLAIN_TEXT:
        return {"vr": vr, "Value": [value]}
    if value is None or value == "" or value == []:
        return {"vr": vr}
    if isinstance(value, Mapping):  # {"BulkDataID", "Length"}
        if bulk_uri is None or "BulkDataID" not in value:
            return {"vr": vr}
        return {"vr": vr, "BulkDataURI": bulk_uri(str(value["BulkDataID"]))}
    if vr == "SQ":
        items = value if isinstance(value, list) else [value]
        return {"vr": vr, "Value": [to_dicom_json(i, vrs, bulk_uri=bulk_uri, pixel_representation=pr)
                                    for i in items if isinstance(i, Mapping)]}
    if vr in BINARY_VRS:
        return {"vr": vr, "InlineBinary": value} if isinstance(value, str) else {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(v) for v in values]}
    if vr == "IS":
        return {"vr": vr, "Value": [_integer(v) for v in values]}
    if vr == "DS":
        return {"vr": vr, "Value": [_decimal(v) for v in values]}
    if vr in ("ST", "LT", "UT", "UR"):
        return {"vr": vr, "Value": [v if v != "" else None for v in values]}
    return {"vr": vr, "Value": [None if v is None or v == "" else _finite(v) for v in values]}


def _person_name(value: Any) -> Json | None:
    if value is None or value == "":
        return None
    groups = str(value).split("=")
    return {name: group for name, group in zip(_PN_GROUPS, groups) if group}


def _integer(value: Any) -> int | str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return text  # not a number: kept as written rather than dropped


def _decimal(value: Any) -> int | float | str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


dumps = documents.dumps  # orjson: 10x the standard library on QIDO and metadata answers


def element(vr: str, *values: Any) -> Json:
    """A hand-made element (RetrieveURL, FailureReason, ...)."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}
