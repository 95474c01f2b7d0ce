"""The AHI image set metadata document pieces of one instance (spec section 2).

Values are encoded the way AHI's GetImageSetMetadata shows them: text as
Unicode strings (PN as one string, '=' between component groups), IS and DS as
their original strings, binary numbers as JSON numbers, OB/OW/UN... as base64,
sequences as lists of objects, present-but-empty as null. Keys are keywords;
private and unknown tags are 8 uppercase hex digits, with their VR in `vrs`.

Values are encoded from the raw bytes as read (`RawHeader`, kept in
`ParsedInstance.header`), so a value that is invalid for its VR is kept as it
is instead of failing, and reading values through the pydicom Dataset later
cannot change the document.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.filereader import read_sequence_item
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName

from tessel.dicom import charsets
from tessel.dicom.levels import level_of
from tessel.dicom.models import BulkRef, ParsedInstance
from tessel.dicom.vrs import BINARY_VRS, NUMBER_FORMATS, SPLIT_VRS, allows_multiple, is_private, resolve_vr

Json = Any  # str | int | float | None | list[Json] | dict[str, Json]

_SWAP_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_STRIP_BOTH = frozenset({"AE", "CS"})
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UR"})


@dataclass(frozen=True, slots=True)
class InstanceLevels:
    """One instance's attributes split into the document's levels, plus its private/unknown VRs."""

    patient: dict[str, Json]
    study: dict[str, Json]
    series: dict[str, Json]
    instance: dict[str, Json]
    vrs: dict[str, str]


@dataclass(slots=True)
class _Context:
    pixel_representation: int
    vrs: dict[str, str] = field(default_factory=dict)
    # bulk references by the path of the dataset holding them ("" top level, "54000100.0." an item)
    bulk: dict[str, list[tuple[int, BulkRef]]] = field(default_factory=dict)
    bulk_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Items:
    """A sequence in a snapshot: its items, each a snapshot node."""

    items: list[dict[int, Any]]


Node = dict[int, Any]  # tag -> RawDataElement | DataElement (converted by someone) | Items


@dataclass(frozen=True, slots=True)
class RawHeader:
    """The elements as read, kept apart from the Dataset so that later conversions through the
    pydicom API (which strip IS/DS padding, for one) cannot change the document."""

    meta: Node
    dataset: Node


def snapshot(ds: Dataset) -> Node:
    """The elements of `ds` as they are now, sequences included; raw elements are shared, not copied."""
    node: Node = {}
    for tag in ds.keys():
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, DataElement) and elem.VR == "SQ":
            node[int(tag)] = Items([snapshot(item) for item in elem.value or ()])
        elif elem is not None:
            node[int(tag)] = elem
    return node


def raw_header(ds: Dataset) -> RawHeader:
    meta = getattr(ds, "file_meta", None)
    return RawHeader(snapshot(meta) if meta is not None else {}, snapshot(ds))


def instance_levels(parsed: ParsedInstance, bulk_ids: dict[str, str]) -> InstanceLevels:
    """Split `parsed` into patient/study/series/instance dicts; bulk values become BulkDataID refs."""
    header = parsed.header if isinstance(parsed.header, RawHeader) else raw_header(parsed.dataset)
    pr = parsed.pixel.pixel_representation if parsed.pixel is not None else _pixel_representation(header.dataset)
    ctx = _Context(pr, bulk_ids=bulk_ids)
    for ref in parsed.bulk:
        if ref.tag not in bulk_ids:
            raise ValueError(f"bulk_ids has no id for bulk attribute {ref.tag}")
        parent, _, tag = ref.tag.rpartition(".")
        ctx.bulk.setdefault(f"{parent}." if parent else "", []).append((int(tag, 16), ref))
    levels: dict[str, dict[str, Json]] = {"patient": {}, "study": {}, "series": {}, "instance": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's decoding complaints: values are kept
        levels["instance"].update(encode_node(header.meta, charsets.encodings_for(None), ctx, "meta:"))
        for key, value in encode_node(header.dataset, node_encodings(header.dataset), ctx).items():
            levels[level_of(key)][key] = value
    if parsed.pixel is not None:
        levels["instance"][parsed.pixel.pixel_keyword] = None
    return InstanceLevels(levels["patient"], levels["study"], levels["series"], levels["instance"], ctx.vrs)


def _pixel_representation(node: Node) -> int:
    elem = node.get(0x00280103)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and len(elem.value) == 2:
        return int.from_bytes(elem.value, "little" if elem.is_little_endian else "big")
    value = getattr(elem, "value", None)
    return value if isinstance(value, int) else 0


def node_encodings(node: Node, parent: list[str] | None = None) -> list[str]:
    """The Python codecs for a dataset or item: its own Specific Character Set, else its parent's."""
    elem = node.get(0x00080005)
    if elem is None or isinstance(elem, Items):
        return parent if parent is not None else charsets.encodings_for(None)
    value = elem.value
    if isinstance(value, bytes):
        return charsets.encodings_for(charsets.charset_values(value))
    return charsets.encodings_for(list(value) if isinstance(value, MultiValue) else value)


def encode_node(node: Node, encodings: list[str], ctx: _Context, path: str = "") -> dict[str, Json]:
    """Every element of a dataset or item (at bulk `path`) as document key -> value, in tag order."""
    entries: list[tuple[int, str, Json]] = []
    for tag, elem in node.items():
        entries.append((tag, *_encode_element(tag, elem, encodings, ctx, path)))
    for tag, ref in ctx.bulk.get(path, ()):
        entries.append((tag, _key(tag, ref.vr, ctx), {"BulkDataID": ctx.bulk_ids[ref.tag], "Length": ref.length}))
    return {key: value for _, key, value in sorted(entries, key=lambda e: e[0])}


@lru_cache(maxsize=8192)
def _keyword(tag: int) -> str:
    """The keyword if the dictionary names exactly this tag (not a repeating group like 60xx)."""
    keyword = keyword_for_tag(tag)
    return keyword if keyword and tag_for_keyword(keyword) == tag else ""


def _key(tag: int, vr: str, ctx: _Context, *, raw: bool = False) -> str:
    """Keyword when the dictionary names exactly this tag; else hex, with the VR recorded.

    `raw`: a public value that could not be read as its VR is kept as bytes, keyed by hex as UN.
    """
    if not is_private(tag) and not raw:
        keyword = _keyword(tag)
        if keyword:
            return keyword
    key = f"{tag:08X}"
    ctx.vrs.setdefault(key, vr)
    return key


def _encode_element(tag: int, elem: RawDataElement | DataElement | Items, encodings: list[str],
                    ctx: _Context, path: str) -> tuple[str, Json]:
    inner = f"{path}{tag:08X}."
    if isinstance(elem, Items):
        return _key(tag, "SQ", ctx), _encode_items(elem.items, encodings, ctx, inner)
    if isinstance(elem, RawDataElement):
        vr = resolve_vr(tag, elem.VR, pixel_representation=ctx.pixel_representation)
        raw = elem.value or b""
        if vr == "SQ":
            try:
                return _key(tag, vr, ctx), _encode_raw_sequence(elem, raw, encodings, ctx, inner)
            except MemoryError:
                raise
            except Exception:  # not a valid sequence after all (or nested beyond reason): keep the bytes
                return _key(tag, "UN", ctx, raw=True), _base64(raw)
        value, valid = encode_value(vr, raw, encodings, little=elem.is_little_endian,
                                    multiple=allows_multiple(tag))
        if not valid and not is_private(tag):
            return _key(tag, "UN", ctx, raw=True), value  # invalid bytes for a public VR: kept raw
        return _key(tag, vr, ctx), value
    vr = str(elem.VR)
    if " or " in vr:
        vr = resolve_vr(tag, None, pixel_representation=ctx.pixel_representation)
    if vr == "SQ":
        return _key(tag, vr, ctx), _encode_items([snapshot(i) for i in elem.value or ()], encodings, ctx, inner)
    return _key(tag, vr, ctx), _encode_converted(vr, elem.value, allows_multiple(tag))


def _encode_raw_sequence(elem: RawDataElement, raw: bytes, encodings: list[str], ctx: _Context,
                         path: str) -> Json:
    """A sequence still held as bytes, parsed one item at a time (30,000 items fit in a few MB)."""
    # A VR UN value holds Implicit VR Little Endian (PS3.5 6.2.2); SQ is in the dataset's encoding.
    implicit, little = (True, True) if elem.VR == "UN" else (elem.is_implicit_VR, elem.is_little_endian)
    fp = io.BytesIO(raw)
    items: list[Json] = []
    while fp.tell() < len(raw):
        item = read_sequence_item(fp, implicit, little, encodings)
        if item is None:  # Sequence Delimitation Item
            break
        node = snapshot(item)
        items.append(encode_node(node, node_encodings(node, encodings), ctx, f"{path}{len(items)}."))
    return items or None


def _encode_items(items: list[Node], encodings: list[str], ctx: _Context, path: str) -> Json:
    if not items:
        return None
    return [encode_node(item, node_encodings(item, encodings), ctx, f"{path}{i}.")
            for i, item in enumerate(items)]


def _base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _number(value: int | float) -> int | float | str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity: "nan", "inf", "-inf"
    return value


def _shape(values: list[Json], multiple: bool) -> Json:
    return values if multiple or len(values) != 1 else values[0]


def encode_value(vr: str, raw: bytes, encodings: list[str], *, little: bool = True,
                 multiple: bool = False) -> tuple[Json, bool]:
    """(document value, whether `raw` was valid for `vr`) for one raw element value.

    >>> encode_value("IS", b"1 ", ["iso8859"]), encode_value("US", b"\\x00\\x02", ["iso8859"])
    (('1 ', True), (512, True))
    >>> encode_value("CS", b"ORIGINAL\\\\PRIMARY\\\\\\\\0015", ["iso8859"], multiple=True)
    (['ORIGINAL', 'PRIMARY', '', '0015'], True)
    """
    if vr in BINARY_VRS:
        size = _SWAP_SIZES.get(vr)
        if not little and size and len(raw) % size == 0:  # base64 values are little endian
            raw = b"".join(raw[i:i + size][::-1] for i in range(0, len(raw), size))
        return _base64(raw), True
    if not raw:
        return None, True
    if vr in NUMBER_FORMATS:
        fmt = NUMBER_FORMATS[vr]
        size = struct.calcsize("<" + fmt)
        if len(raw) % size:
            return _base64(raw), False
        numbers = struct.unpack(f"{'<' if little else '>'}{len(raw) // size}{fmt}", raw)
        return _shape([_number(n) for n in numbers], multiple), True
    if vr == "AT":
        if len(raw) % 4:
            return _base64(raw), False
        pairs = struct.unpack(f"{'<' if little else '>'}{len(raw) // 2}H", raw)
        return _shape([f"{g:04X}{e:04X}" for g, e in zip(pairs[::2], pairs[1::2])], multiple), True
    if vr in ("IS", "DS"):  # the original strings, padding kept (AHI: "NumberOfFrames": "1 ")
        return _shape(raw.decode("latin-1").split("\\"), multiple), True
    if vr in _CHARSET_VRS:
        text = charsets.decode(raw, encodings)
    else:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:  # not the default repertoire: decode as the dataset declares
            text = charsets.decode(raw, encodings)
    if vr in _SINGLE_TEXT_VRS:
        values = [text]
    elif vr in SPLIT_VRS:
        values = text.split("\\")
    else:
        return _base64(raw), False  # an unknown VR: keep the bytes
    if vr in _STRIP_BOTH:
        values = [v.strip(" \x00") for v in values]
    elif vr == "PN":  # trailing empty component groups carry nothing (pydicom drops them too)
        values = [v.rstrip(" \x00").rstrip("=") for v in values]
    else:
        values = [v.rstrip(" \x00") for v in values]
    if len(values) == 1 and not values[0]:
        return None, True
    return _shape(list(values), multiple), True


def _encode_converted(vr: str, value: Any, multiple: bool) -> Json:
    """A value pydicom has already converted (someone read it through the Dataset API)."""
    if value is None or (isinstance(value, (str, bytes, list, MultiValue)) and len(value) == 0):
        return "" if vr in BINARY_VRS else None
    if isinstance(value, (bytes, bytearray)):
        return _base64(bytes(value))
    values = list(value) if isinstance(value, (list, MultiValue, tuple)) else [value]
    encoded = [_converted_scalar(v) for v in values]
    if encoded == [""]:
        return None
    return _shape(encoded, multiple)


def _converted_scalar(value: Any) -> Json:
    original = getattr(value, "original_string", None)
    if isinstance(original, str):
        return original
    if isinstance(value, BaseTag):
        return f"{int(value):08X}"
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return _number(value)
