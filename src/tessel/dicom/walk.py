"""A structural walk over a dataset: where every element starts and ends, without reading values.

pydicom reads values; this walk runs first and answers what pydicom does not:
does the file end early (pydicom silently returns short reads), is the
nesting sane (pydicom recurses and can exhaust the stack), and where do the
fragments of encapsulated Pixel Data lie (pydicom would read them all into
memory). It is iterative, seeks over values, and so costs only the header.

It follows pydicom's reading rules (per-item implicit VR detection, VR UN of
undefined length read as a sequence) so that both agree on the structure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from tessel.dicom.vrs import BINARY_VRS, resolve_vr
from tessel.errors import InvalidInput

ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # Float, Double Float, Pixel Data
UNDEFINED = 0xFFFFFFFF
# Sequences nested deeper than this are refused: real SR trees stay far below it,
# and pydicom needs several stack frames per level.
MAX_DEPTH = 64

_KNOWN_VRS = frozenset(str(vr).encode() for vr in VR if len(str(vr)) == 2)
_LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)
_DATASET, _ITEM, _SEQUENCE, _FRAGMENTS = range(4)
_KIND_NAMES = {_DATASET: "dataset", _ITEM: "sequence item", _SEQUENCE: "sequence",
               _FRAGMENTS: "encapsulated value"}


def tag_name(tag: int) -> str:
    """'(7FE0,0010) PixelData': how messages name an element."""
    keyword = keyword_for_tag(tag) if tag >> 16 & 1 == 0 else ""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {keyword}" if keyword else "")


@dataclass(slots=True)
class TopElement:
    """One element of the top-level dataset and its extent in the source."""

    tag: int
    vr: str | None  # as written; None for implicit VR
    offset: int  # of the tag
    value_offset: int
    length: int | None  # None for undefined length
    end: int = 0  # just past the element (after its delimiter, if any)
    # For top-level encapsulated Pixel Data: (value offset, length) of every item;
    # the first is the Basic Offset Table.
    fragments: list[tuple[int, int]] | None = None


@dataclass(frozen=True, slots=True)
class NestedValue:
    """A large binary value inside a sequence item (a candidate for bulk data)."""

    path: tuple[tuple[int, int], ...]  # (sequence tag, item index) from the top level down
    tag: int
    vr: str
    value_offset: int
    length: int


@dataclass(slots=True)
class Walk:
    elements: list[TopElement] = field(default_factory=list)
    missing_final_delimiter: bool = False  # encapsulated Pixel Data ran to end of file
    trailing_zero_bytes: int = 0  # fewer than 8 zero bytes after the last element
    implicit_items: bool = False  # some item was read as implicit VR inside an explicit dataset
    big_endian_un_sequences: list[int] = field(default_factory=list)  # top-level tags (see read.py)
    nested_binary: list[NestedValue] = field(default_factory=list)  # longer than `binary_threshold`


@dataclass(slots=True)
class _Ctx:
    kind: int
    end: int | None  # None: ends at a delimiter (or, for the dataset, at end of file)
    implicit: bool
    little: bool
    depth: int
    owner: TopElement | None = None  # the top-level element this context belongs to
    path: tuple[tuple[int, int], ...] = ()  # (sequence tag, item index) down to this item/sequence
    tag: int = 0  # of a sequence
    items: int = 0  # items of a sequence seen so far


def _truncated(message: str) -> InvalidInput:
    return InvalidInput(f"file ends early: {message}", reason="truncated")


def walk_dataset(fp: BinaryIO, start: int, size: int, *, implicit: bool, little: bool,
                 binary_threshold: int | None = None) -> Walk:
    """Walk the dataset in `fp` from `start` to `size`; raise InvalidInput on a broken structure.

    Binary values inside sequences longer than `binary_threshold` are listed in `nested_binary`.
    """
    result = Walk()
    stack = [_Ctx(_DATASET, size, implicit, little, 0)]
    pos = start
    fp.seek(pos)
    here = pos  # where fp is, to skip needless seeks

    def read(at: int, n: int) -> bytes:
        nonlocal here
        if at != here:
            fp.seek(at)
        data = fp.read(n)
        here = at + len(data)
        return data

    while True:
        ctx = stack[-1]
        if ctx.end is not None and pos >= ctx.end:
            if pos > ctx.end:
                raise InvalidInput(f"an element ending at offset {pos} runs past the end of its "
                                   f"{_KIND_NAMES[ctx.kind]} (which ends at {ctx.end})", reason="malformed")
            if ctx.kind == _DATASET:
                return result
            stack.pop()
            if ctx.kind == _SEQUENCE and ctx.owner is not None and len(stack) == 1:
                ctx.owner.end = pos
            continue
        hdr = read(pos, 8)
        if len(hdr) < 8:
            if ctx.kind == _FRAGMENTS and not hdr and ctx.owner is not None and len(stack) == 2:
                # All fragments present, only the Sequence Delimitation Item is missing
                # (fo-dicom GH1339); the fragment check in frames.py still applies.
                result.missing_final_delimiter = True
                ctx.owner.end = pos
                stack.pop()
                continue
            if ctx.kind == _DATASET and hdr.strip(b"\x00") == b"":
                result.trailing_zero_bytes = len(hdr)
                return result
            where = "inside an element header" if ctx.kind == _DATASET else \
                f"inside a {_KIND_NAMES[ctx.kind]} (nesting depth {ctx.depth})"
            raise _truncated(f"the file ends {where} at offset {pos + len(hdr)}")
        endian = "<" if ctx.little else ">"
        group, element = struct.unpack_from(endian + "HH", hdr)
        tag = group << 16 | element
        if ctx.kind in (_SEQUENCE, _FRAGMENTS):
            (length,) = struct.unpack_from(endian + "L", hdr, 4)
            if tag == ITEM:
                if ctx.kind == _FRAGMENTS:
                    if length == UNDEFINED:
                        raise InvalidInput(f"a fragment at offset {pos} has undefined length",
                                           reason="malformed")
                    if pos + 8 + length > size:
                        what = tag_name(ctx.owner.tag) if ctx.owner else "an encapsulated value"
                        raise _truncated(f"{what} ends inside its fragment at offset {pos}: the "
                                         f"fragment declares {length} bytes but only "
                                         f"{size - pos - 8} remain")
                    if ctx.owner is not None and ctx.owner.fragments is not None:
                        ctx.owner.fragments.append((pos + 8, length))
                    pos += 8 + length
                    continue
                item_end = None if length == UNDEFINED else pos + 8 + length
                if item_end is not None and item_end > (ctx.end or size):
                    if item_end > size:
                        raise _truncated(f"a sequence item at offset {pos} declares {length} bytes "
                                         f"but only {size - pos - 8} remain")
                    raise InvalidInput(f"a sequence item at offset {pos} runs past the end of its "
                                       f"sequence", reason="malformed")
                item_implicit = ctx.implicit
                if not item_implicit and length != 0:
                    # pydicom decides per item whether an explicit-VR file switched to implicit VR
                    peek = read(pos + 12, 2)
                    if len(peek) == 2 and not (0x40 < peek[0] < 0x5B and 0x40 < peek[1] < 0x5B):
                        item_implicit = True
                        result.implicit_items = True
                stack.append(_Ctx(_ITEM, item_end, item_implicit, ctx.little, ctx.depth, ctx.owner,
                                  ctx.path + ((ctx.tag, ctx.items),)))
                ctx.items += 1
                pos += 8
                continue
            if tag == SEQUENCE_DELIMITER and ctx.end is None:
                stack.pop()
                pos += 8
                if ctx.owner is not None and len(stack) == 1:
                    ctx.owner.end = pos
                continue
            raise InvalidInput(f"expected an item (FFFE,E000) in a {_KIND_NAMES[ctx.kind]} at offset "
                               f"{pos}, found {tag_name(tag)}", reason="malformed")

        # Inside the dataset or an item: an ordinary element or an item delimiter.
        if tag == ITEM_DELIMITER:
            if ctx.kind == _ITEM:
                stack.pop()  # pydicom ends the item here even if it had a defined length
                pos += 8
                continue
            raise InvalidInput(f"unexpected Item Delimitation Item at offset {pos} outside any "
                               f"sequence", reason="malformed")
        if tag == SEQUENCE_DELIMITER or tag == ITEM:
            raise InvalidInput(f"unexpected {tag_name(tag)} at offset {pos} inside a "
                               f"{_KIND_NAMES[ctx.kind]}", reason="malformed")

        vr: str | None = None
        header_length = 8
        if ctx.implicit:
            (length,) = struct.unpack_from(endian + "L", hdr, 4)
        else:
            raw_vr = hdr[4:6]
            if raw_vr in _KNOWN_VRS:
                vr = raw_vr.decode()
                if raw_vr in _LONG_VRS:
                    extra = read(pos + 8, 4)
                    if len(extra) < 4:
                        raise _truncated(f"the file ends inside the header of {tag_name(tag)} at "
                                         f"offset {pos}")
                    (length,) = struct.unpack(endian + "L", extra)
                    header_length = 12
                else:
                    (length,) = struct.unpack_from(endian + "H", hdr, 6)
            elif not (b"AA" <= raw_vr <= b"ZZ"):
                # pydicom assumes the writer switched to implicit VR for this element
                (length,) = struct.unpack_from(endian + "L", hdr, 4)
            else:
                vr = raw_vr.decode("latin-1")  # unknown VR: pydicom reads a 2-byte length
                (length,) = struct.unpack_from(endian + "H", hdr, 6)
        value_offset = pos + header_length
        top = None
        if len(stack) == 1:
            top = TopElement(tag, vr, pos, value_offset, None if length == UNDEFINED else length)
            result.elements.append(top)
        owner = top if top is not None else ctx.owner

        if length != UNDEFINED:
            end = value_offset + length
            if end > size:
                raise _truncated(f"{tag_name(tag)} at offset {pos} declares {length} bytes but "
                                 f"only {size - value_offset} remain")
            if ctx.end is not None and end > ctx.end:
                raise InvalidInput(f"{tag_name(tag)} at offset {pos} runs past the end of its "
                                   f"{_KIND_NAMES[ctx.kind]}", reason="malformed")
            if top is not None:
                top.end = end
            if length and (vr == "SQ" or (vr is None and _dictionary_vr(tag) == "SQ")):
                _push(stack, _Ctx(_SEQUENCE, end, ctx.implicit, ctx.little, ctx.depth + 1, owner,
                                  ctx.path, tag), pos)
                pos = value_offset
                continue
            if binary_threshold is not None and top is None and length > binary_threshold:
                resolved = resolve_vr(tag, vr)
                if resolved in BINARY_VRS:
                    result.nested_binary.append(NestedValue(ctx.path, tag, resolved, value_offset, length))
            pos = end
            continue

        # Undefined length: encapsulated pixel data, or a sequence (as pydicom decides).
        if tag in PIXEL_TAGS:
            kind, child_implicit, child_little = _FRAGMENTS, ctx.implicit, ctx.little
            if top is not None:
                top.fragments = []
        elif vr == "UN":
            kind, child_implicit, child_little = _SEQUENCE, ctx.implicit, ctx.little
            if not ctx.little:
                # PS3.5 6.2.2: the content is Implicit VR Little Endian whatever the syntax.
                child_implicit, child_little = True, True
                if top is not None:
                    result.big_endian_un_sequences.append(tag)
        elif vr == "SQ":
            kind, child_implicit, child_little = _SEQUENCE, ctx.implicit, ctx.little
        elif vr is None:
            dict_vr = _dictionary_vr(tag)
            if dict_vr == "SQ" or (dict_vr is None and _is_item(read(value_offset, 4), endian)):
                kind = _SEQUENCE
            elif dict_vr is None:
                raise InvalidInput(f"{tag_name(tag)} at offset {pos} has undefined length but is "
                                   f"neither a sequence nor encapsulated data", reason="malformed")
            else:
                kind = _FRAGMENTS
            child_implicit, child_little = ctx.implicit, ctx.little
        else:
            kind, child_implicit, child_little = _FRAGMENTS, ctx.implicit, ctx.little
        _push(stack, _Ctx(kind, None, child_implicit, child_little, ctx.depth + 1, owner, ctx.path, tag), pos)
        pos = value_offset


def _push(stack: list[_Ctx], ctx: _Ctx, pos: int) -> None:
    if ctx.depth > MAX_DEPTH:
        raise InvalidInput(f"sequences are nested more than {MAX_DEPTH} levels deep (at offset "
                           f"{pos}); refusing pathological nesting", reason="nesting")
    stack.append(ctx)


def _is_item(head: bytes, endian: str) -> bool:
    return len(head) == 4 and struct.unpack(endian + "HH", head) == (0xFFFE, 0xE000)


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
