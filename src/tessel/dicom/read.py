"""Part 10 bytes to a `ParsedInstance`: header, frame index and bulk references.

Memory is bounded by the header, never the file: a structural walk (walk.py)
finds every element's extent and the Pixel Data fragments by seeking; pydicom
then reads the header values, stopping before Pixel Data and leaving large
binary values unread (`defer_size`). Pixel and bulk bytes are read later, on
demand, through `ParsedInstance.open_source` (`read_frame`, `read_bulk`).

Read tolerant, refuse clearly: quirks that widely used toolkits accept are
accepted (with an import warning when something was coerced); anything that
is not a complete Part 10 instance raises `InvalidInput` saying why.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import data_element_generator, read_sequence
from pydicom.tag import BaseTag
from pydicom.values import convert_SQ

from tessel.dicom import charsets
from tessel.dicom.document import raw_header
from tessel.dicom.frames import encapsulated_frames, native_frames
from tessel.dicom.models import BulkRef, FrameRef, ParsedInstance, PixelInfo
from tessel.dicom.syntaxes import SYNTAXES, FrameStart, SyntaxInfo
from tessel.dicom.vrs import BINARY_VRS, resolve_vr
from tessel.dicom.walk import PIXEL_TAGS, UNDEFINED, TopElement, Walk, tag_name, walk_dataset
from tessel.errors import InvalidInput, Unsupported

DEFAULT_BULK_THRESHOLD = 1_048_576
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
MAX_INFLATED = 1 << 30  # a deflated dataset larger than this is refused (decompression bomb)
_MAX_META_VALUE = 1 << 16
COERCION = 45056
SOP_CLASS_MISMATCH = 45063
OTHER = 47513
_PIXEL_KEYWORDS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_EXTENDED_OFFSET_TABLE = 0x7FE00001


def read_instance(path: str | os.PathLike[str], *, bulk_threshold: int = DEFAULT_BULK_THRESHOLD) -> ParsedInstance:
    """Parse the Part 10 file at `path`; raise InvalidInput saying why if it cannot be stored.

    OSError (no such file, permission denied) propagates: that is not a fault of the input.
    """
    source = Path(path)
    with open(source, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        return _read(fp, size, lambda: open(source, "rb"), bulk_threshold)


def read_instance_bytes(data: bytes, *, bulk_threshold: int = DEFAULT_BULK_THRESHOLD) -> ParsedInstance:
    """As `read_instance`, for an instance held in memory (STOW-RS part, DIMSE dataset)."""
    data = bytes(data)  # a no-op for bytes; freezes a bytearray the caller might change
    return _read(io.BytesIO(data), len(data), lambda: io.BytesIO(data), bulk_threshold)


def read_frame(parsed: ParsedInstance, index: int) -> bytes:
    """The stored bytes of frame `index` (0-based), its fragments concatenated."""
    if not 0 <= index < len(parsed.frames):
        raise InvalidInput(f"frame index {index} is out of range: the instance has "
                           f"{len(parsed.frames)} frames", reason="frame-index")
    return _read_segments(parsed, parsed.frames[index].segments)


def read_bulk(parsed: ParsedInstance, ref: BulkRef) -> bytes:
    """The value of a bulk attribute left out of the header."""
    return _read_segments(parsed, ((ref.offset, ref.length),))


def _read_segments(parsed: ParsedInstance, segments: tuple[tuple[int, int], ...]) -> bytes:
    parts = []
    with parsed.open_source() as fp:
        for offset, length in segments:
            fp.seek(offset)
            data = fp.read(length)
            if len(data) != length:
                raise InvalidInput(f"the source is shorter than when it was indexed: wanted {length} "
                                   f"bytes at offset {offset}, got {len(data)}", reason="truncated")
            parts.append(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _warning(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"warning_reason_code": code, "type": kind, "message": message}


# -- Part 10 framing -------------------------------------------------------------------------

def _not_part10(head: bytes, size: int) -> InvalidInput:
    """Why a file without preamble + 'DICM' is refused, named as specifically as we can."""
    if size == 0:
        return InvalidInput("empty file (0 bytes): not a DICOM instance", reason="not-dicom")
    kinds = [(b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "gzip-compressed data"),
             (b"PK\x03\x04", "a ZIP archive"), (b"\x89PNG", "a PNG image"), (b"II*\x00", "a TIFF image"),
             (b"MM\x00*", "a TIFF image")]
    for magic, kind in kinds:
        if head.startswith(magic):
            extra = " (unpack it first)" if kind in ("gzip-compressed data", "a ZIP archive") else ""
            return InvalidInput(f"not DICOM: the file is {kind}{extra}", reason="not-dicom")
    sample = head[:132]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return InvalidInput("not DICOM: the file is plain text", reason="not-dicom")
    if size < 132:
        return InvalidInput(f"not a DICOM Part 10 file: only {size} bytes, too short for the 128-byte "
                            f"preamble and 'DICM' prefix", reason="not-part10")
    if len(head) >= 6 and struct.unpack_from("<H", head)[0] in (0x0002, 0x0008) and 0x40 < head[4] < 0x5B:
        return InvalidInput("not a DICOM Part 10 file: no 128-byte preamble, 'DICM' prefix or File Meta "
                            "Information; it looks like a bare dataset (its transfer syntax would have to "
                            "be guessed)", reason="not-part10")
    return InvalidInput("not a DICOM Part 10 file: no 'DICM' prefix after a 128-byte preamble",
                        reason="not-part10")


def _read_file_meta(fp: BinaryIO, size: int, head: bytes) -> tuple[FileMetaDataset, int]:
    """Group 0002 after 'DICM' (always Explicit VR Little Endian); returns it and where it ends."""
    meta: dict[BaseTag, DataElement | RawDataElement] = {}
    pos = 132
    while True:
        fp.seek(pos)
        hdr = fp.read(8)
        if len(hdr) < 8:
            if hdr:
                raise InvalidInput("file ends early: inside the File Meta Information", reason="truncated")
            break
        group, element = struct.unpack_from("<HH", hdr)
        if group != 0x0002:
            break
        vr = hdr[4:6].decode("latin-1")
        length = struct.unpack_from("<H", hdr, 6)[0]
        start = pos + 8
        if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"):
            length = struct.unpack("<L", fp.read(4).rjust(4, b"\xff"))[0]
            start += 4
        elif not vr.isalpha():
            raise InvalidInput(f"File Meta Information element ({group:04X},{element:04X}) at offset {pos} "
                               f"is not Explicit VR Little Endian", reason="not-part10")
        if start + length > size:
            raise InvalidInput(f"file ends early: File Meta Information element ({group:04X},{element:04X}) "
                               f"at offset {pos} declares {length} bytes but only {max(size - start, 0)} "
                               f"remain", reason="truncated")
        if length > _MAX_META_VALUE:
            raise InvalidInput(f"File Meta Information element ({group:04X},{element:04X}) at offset {pos} "
                               f"declares {length} bytes; File Meta values are small", reason="malformed")
        fp.seek(start)
        tag = BaseTag(group << 16 | element)
        meta[tag] = RawDataElement(tag, vr, length, fp.read(length), start, False, True)
        pos = start + length
    if not meta:
        first = struct.unpack_from("<HH", head.ljust(140, b"\x00"), 132)
        prefix = ""
        if struct.unpack_from("<H", head)[0] in (0x0002, 0x0008) and 0x40 < head[4] < 0x5B:
            prefix = "the file starts with a bare dataset and "
        raise InvalidInput(f"not a DICOM Part 10 file: {prefix}the bytes 'DICM' at offset 128 are not "
                           f"followed by File Meta Information (group 0002); found "
                           f"({first[0]:04X},{first[1]:04X})", reason="not-part10")
    return FileMetaDataset(meta), pos


def _raw_text(elem: Any) -> str | None:
    """The text of a raw or converted element, stripped; None if absent or empty."""
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).strip(" \x00") if value is not None else ""
    return text or None


def _uid(ds: Dataset, tag: int) -> str | None:
    return _raw_text(ds.get_item(tag, keep_deferred=True))


# -- the dataset --------------------------------------------------------------------------------

def _read(fp: BinaryIO, size: int, opener: Callable[[], BinaryIO], bulk_threshold: int) -> ParsedInstance:
    head = fp.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        raise _not_part10(head, size)
    meta, meta_end = _read_file_meta(fp, size, head)
    syntax_uid = _raw_text(meta.get_item(0x00020010))
    if syntax_uid is None:
        raise InvalidInput("File Meta Information has no Transfer Syntax UID (0002,0010), so the dataset "
                           "cannot be decoded", reason="no-transfer-syntax")
    syntax = SYNTAXES.get(syntax_uid)
    if syntax is None:
        raise Unsupported(f"unsupported transfer syntax {syntax_uid!r}", reason="transfer-syntax")
    found: list[dict[str, Any]] = []
    source, start, source_size = fp, meta_end, size
    if syntax.deflated:
        # Inflated into memory: deflated files are small in practice, and offsets must refer
        # to the inflated bytes, which `open_source` then returns as a BytesIO.
        inflated = _inflate(fp, meta_end)
        source, start, source_size = io.BytesIO(inflated), 0, len(inflated)
        opener = lambda: io.BytesIO(inflated)  # noqa: E731
    implicit, little = _dataset_encoding(source, start, syntax, syntax_uid, found)
    layout = walk_dataset(source, start, source_size, implicit=implicit, little=little,
                          binary_threshold=bulk_threshold)
    if layout.trailing_zero_bytes:
        found.append(_warning(OTHER, "OTHER", f"{layout.trailing_zero_bytes} zero bytes after the last "
                                              f"element were ignored"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        ds, bulk = _parse(source, start, layout, implicit, little, bulk_threshold)
    for w in caught:
        found.append(_warning(OTHER, "OTHER", f"while reading: {w.message}"))
    ds.file_meta = meta
    return _validated(ds, meta, syntax_uid, syntax, layout, source, bulk, opener, found)


def _inflate(fp: BinaryIO, start: int) -> bytes:
    fp.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        while chunk := fp.read(1 << 20):
            out += inflater.decompress(chunk, MAX_INFLATED + 1 - len(out))
            if len(out) > MAX_INFLATED or inflater.unconsumed_tail:
                raise InvalidInput(f"the deflated dataset inflates to more than {MAX_INFLATED} bytes",
                                   reason="too-large")
        out += inflater.flush()
    except zlib.error as exc:
        raise InvalidInput(f"the deflated dataset cannot be inflated: {exc}", reason="malformed") from None
    return bytes(out)


def _dataset_encoding(fp: BinaryIO, start: int, syntax: SyntaxInfo, uid: str,
                      found: list[dict[str, Any]]) -> tuple[bool, bool]:
    """Implicit or explicit VR: trust the first element over File Meta, as pydicom does."""
    fp.seek(start + 4)
    vr = fp.read(2)
    if len(vr) < 2:
        return syntax.implicit_vr, syntax.little_endian
    looks_implicit = not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)
    if looks_implicit != syntax.implicit_vr:
        found.append(_warning(COERCION, "COERCION_OF_DATA_ELEMENTS",
                              f"Transfer Syntax {uid} says {'implicit' if syntax.implicit_vr else 'explicit'} "
                              f"VR but the dataset is {'implicit' if looks_implicit else 'explicit'} VR; "
                              f"read as found"))
    return looks_implicit, syntax.little_endian


def _parse(fp: BinaryIO, start: int, layout: Walk, implicit: bool, little: bool,
           bulk_threshold: int) -> tuple[Dataset, list[BulkRef]]:
    """Read the header with pydicom, element by element, skipping what the walk set aside."""
    special = [e for e in layout.elements if e.tag in PIXEL_TAGS or e.tag in layout.big_endian_un_sequences]
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: list[str] = charsets.encodings_for(None)
    fp.seek(start)
    try:
        while True:
            stopped: list[int] = []

            def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
                if special and not stopped and int(tag) == special[0].tag:
                    stopped.append(int(tag))
                    return True
                return False

            for elem in data_element_generator(fp, implicit, little, stop, bulk_threshold, encoding):
                elements[elem.tag] = elem
                if elem.tag == 0x00080005 and isinstance(elem.value, bytes):
                    encoding = charsets.encodings_for(charsets.charset_values(elem.value))
            if not stopped:
                break
            span = special.pop(0)
            if fp.tell() != span.offset:
                raise InvalidInput(f"pydicom and the structural walk disagree about where {tag_name(span.tag)} "
                                   f"starts ({fp.tell()} vs {span.offset})", reason="malformed")
            if span.tag in layout.big_endian_un_sequences:
                # VR UN of undefined length in a Big Endian file holds Implicit VR Little Endian
                # (PS3.5 6.2.2); pydicom 3.0.2 reads it big endian and fails (fo-dicom GH177).
                fp.seek(span.value_offset)
                seq = read_sequence(fp, True, True, UNDEFINED, encoding)
                elements[BaseTag(span.tag)] = DataElement(span.tag, "SQ", seq, span.value_offset,
                                                          is_undefined_length=True)
            fp.seek(span.end)
    except InvalidInput:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises many kinds; each means the same: unreadable header
        raise InvalidInput(f"the dataset cannot be parsed: {type(exc).__name__}: {exc}",
                           reason="malformed") from exc

    pixel_representation = _small_int(elements.get(BaseTag(0x00280103))) or 0
    bulk: list[BulkRef] = []
    for tag, elem in list(elements.items()):
        if not isinstance(elem, RawDataElement) or elem.value is not None or not elem.length:
            continue
        # Deferred by pydicom: a large value. Binary ones become bulk data, the rest are read.
        vr = resolve_vr(int(tag), elem.VR, pixel_representation=pixel_representation)
        if vr in BINARY_VRS:
            bulk.append(BulkRef(f"{int(tag):08X}", vr, elem.value_tell, elem.length))
            del elements[tag]
        else:
            fp.seek(elem.value_tell)
            elements[tag] = elem._replace(value=fp.read(elem.length))
    ds = Dataset(elements)
    ds.set_original_encoding(implicit, little, encoding)
    _nested_bulk(ds, layout, encoding, bulk)
    return ds, bulk


def _nested_bulk(ds: Dataset, layout: Walk, encodings: list[str], bulk: list[BulkRef]) -> None:
    """Move large binary values inside sequences out as bulk data (e.g. waveforms, ICC profiles).

    The walk found them; pydicom has read them already (it does not defer inside sequences).
    Only the sequences on the way to one are parsed here (pydicom keeps sequences of defined
    length as bytes until asked). Paths name the element: "54000100.0.54001010" is element
    (5400,1010) of item 0 of (5400,0100).
    """
    for found in layout.nested_binary:
        holder: Dataset | None = ds
        item_encodings = encodings
        for tag, index in found.path:
            if holder is None:
                break
            own = holder.get_item(0x00080005, keep_deferred=True)
            if isinstance(own, RawDataElement) and isinstance(own.value, bytes):
                item_encodings = charsets.encodings_for(charsets.charset_values(own.value))
            holder = _item(holder, tag, index, item_encodings)
        if holder is None:
            continue  # a sequence on the way did not parse: the document keeps the bytes
        elem = holder.get_item(found.tag, keep_deferred=True)
        if not isinstance(elem, RawDataElement) or elem.value is None or len(elem.value) != found.length:
            continue
        path = "".join(f"{tag:08X}.{index}." for tag, index in found.path)
        bulk.append(BulkRef(f"{path}{found.tag:08X}", found.vr, found.value_offset, found.length))
        del holder[found.tag]


def _item(holder: Dataset, tag: int, index: int, encodings: list[str]) -> Dataset | None:
    """Item `index` of sequence `tag` in `holder`, parsing the sequence in place if still bytes."""
    elem = holder.get_item(tag, keep_deferred=True)
    if isinstance(elem, RawDataElement):
        implicit, little = (True, True) if elem.VR == "UN" else (elem.is_implicit_VR, elem.is_little_endian)
        try:
            seq = convert_SQ(elem.value or b"", implicit, little, encodings, elem.value_tell)
        except MemoryError:
            raise
        except Exception:  # not a valid sequence after all
            return None
        holder[tag] = DataElement(tag, "SQ", seq, file_value_tell=elem.value_tell)
        elem = holder.get_item(tag)
    items = elem.value if isinstance(elem, DataElement) and elem.VR == "SQ" else None
    return items[index] if items is not None and index < len(items) else None


def _small_int(elem: Any) -> int | None:
    """An unsigned 16-bit value from a raw or converted element, or None if absent/empty."""
    if elem is None or elem.value in (None, b"", ""):
        return None
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        if len(elem.value) != 2:
            raise ValueError(f"{len(elem.value)} bytes")
        return int.from_bytes(elem.value, "little" if elem.is_little_endian else "big")
    return int(elem.value)


# -- validation and the frame index -------------------------------------------------------------

def _validated(ds: Dataset, meta: FileMetaDataset, syntax_uid: str, syntax: SyntaxInfo, layout: Walk,
               source: BinaryIO, bulk: list[BulkRef], opener: Callable[[], BinaryIO],
               found: list[dict[str, Any]]) -> ParsedInstance:
    sop_class = _uid(ds, 0x00080016)
    media_class = _raw_text(meta.get_item(0x00020002))
    if MEDIA_STORAGE_DIRECTORY in (sop_class, media_class):
        raise InvalidInput("a DICOMDIR (Media Storage Directory) is an index of files, not an instance; "
                           "store the files it lists instead", reason="dicomdir")
    uids = {"SOP Class UID (0008,0016)": sop_class, "SOP Instance UID (0008,0018)": _uid(ds, 0x00080018),
            "Study Instance UID (0020,000D)": _uid(ds, 0x0020000D),
            "Series Instance UID (0020,000E)": _uid(ds, 0x0020000E)}
    missing = [name for name, value in uids.items() if value is None]
    if missing:
        raise InvalidInput(f"the dataset has no {', '.join(missing)}; these identify the instance and "
                           f"are required to store it", reason="missing-uid")
    sop_instance = uids["SOP Instance UID (0008,0018)"]
    media_instance = _raw_text(meta.get_item(0x00020003))
    if media_instance is not None and media_instance != sop_instance:
        # Anonymisers often rewrite the dataset and leave File Meta stale; a conformant File Meta
        # then just lags behind and the dataset wins. A File Meta that also lacks its Type 1 group
        # length and version gives no ground to prefer either UID.
        if meta.get_item(0x00020000) is None and meta.get_item(0x00020001) is None:
            raise InvalidInput(f"File Meta Media Storage SOP Instance UID {media_instance!r} contradicts the "
                               f"dataset's SOP Instance UID {sop_instance!r}, and the File Meta Information "
                               f"is not conformant (no group length or version), so neither can be trusted",
                               reason="uid-conflict")
        found.append(_warning(COERCION, "COERCION_OF_DATA_ELEMENTS",
                              f"File Meta Media Storage SOP Instance UID {media_instance} differs from the "
                              f"dataset's SOP Instance UID {sop_instance}; the dataset's is used"))
    if media_class is not None and media_class != sop_class:
        found.append(_warning(SOP_CLASS_MISMATCH, "SOP_CLASS_DATA_MISMATCH",
                              f"File Meta Media Storage SOP Class UID {media_class} differs from the "
                              f"dataset's SOP Class UID {sop_class}; the dataset's is used"))
    pixel_spans = [e for e in layout.elements if e.tag in PIXEL_TAGS]
    pixel: PixelInfo | None = None
    frames: list[FrameRef] = []
    if len(pixel_spans) > 1:
        raise InvalidInput("the dataset has more than one pixel data element: "
                           + ", ".join(tag_name(e.tag) for e in pixel_spans), reason="malformed")
    if pixel_spans:
        span = pixel_spans[0]
        pixel = _pixel_info(ds, syntax_uid, span, found)
        if span.length is None:
            if not syntax.encapsulated:
                raise InvalidInput(f"{tag_name(span.tag)} has undefined length (encapsulated) but transfer "
                                   f"syntax {syntax_uid} is native", reason="malformed")
            extended = _extended_offsets(layout, source)
            frames = encapsulated_frames(source, span.fragments or [], pixel.number_of_frames, syntax_uid,
                                         syntax, extended, found)
            if layout.missing_final_delimiter:
                _check_unterminated(source, frames, syntax, found)
        else:
            if syntax.encapsulated:
                raise InvalidInput(f"transfer syntax {syntax_uid} is encapsulated but {tag_name(span.tag)} "
                                   f"has a defined length of {span.length}", reason="malformed")
            frames = native_frames(pixel, span.value_offset, span.length, found)
    assert sop_class is not None and sop_instance is not None
    study, series = uids["Study Instance UID (0020,000D)"], uids["Series Instance UID (0020,000E)"]
    assert study is not None and series is not None
    return ParsedInstance(dataset=ds, transfer_syntax_uid=syntax_uid, sop_class_uid=sop_class,
                          sop_instance_uid=sop_instance, study_instance_uid=study,
                          series_instance_uid=series, pixel=pixel, frames=frames, bulk=bulk,
                          open_source=opener, warnings=found, header=raw_header(ds))


def _check_unterminated(source: BinaryIO, frames: list[FrameRef], syntax: SyntaxInfo,
                        found: list[dict[str, Any]]) -> None:
    """Pixel Data that runs to end of file without its Sequence Delimitation Item.

    Nothing then proves the fragment list complete: a file cut at a fragment boundary looks
    the same. It is accepted (as fo-dicom and DCMTK do, fo-dicom GH1339) only for a single
    frame whose codestream visibly ends: JPEG EOI or JPEG 2000 EOC (both FF D9).
    """
    complete = False
    if len(frames) == 1 and syntax.frame_start in (FrameStart.JPEG, FrameStart.J2K):
        offset, length = frames[0].segments[-1]
        source.seek(offset + max(length - 3, 0))
        complete = source.read(min(length, 3)).rstrip(b"\x00").endswith(b"\xff\xd9")
    if not complete:
        raise InvalidInput(f"file ends early: encapsulated Pixel Data of {len(frames)} frame(s) ends without "
                           f"its Sequence Delimitation Item, so its last fragments may be missing",
                           reason="truncated")
    found.append(_warning(OTHER, "OTHER", "encapsulated Pixel Data has no final Sequence Delimitation Item; "
                                          "its single frame ends with an end-of-image marker and was kept"))


def _extended_offsets(layout: Walk, source: BinaryIO) -> list[int] | None:
    span = next((e for e in layout.elements if e.tag == _EXTENDED_OFFSET_TABLE), None)
    if span is None or not span.length or span.length % 8:
        return None
    source.seek(span.value_offset)
    raw = source.read(span.length)  # read from the source: it may have become a bulk reference
    return list(struct.unpack(f"<{span.length // 8}Q", raw))


def _pixel_info(ds: Dataset, syntax_uid: str, span: TopElement, found: list[dict[str, Any]]) -> PixelInfo:
    """The image attributes a codec needs; refuse missing or non-numeric required ones."""
    keyword = _PIXEL_KEYWORDS[span.tag]

    def number(tag: int, name: str, default: int | None, *, coerced: bool = True) -> int:
        elem = ds.get_item(tag, keep_deferred=True)
        try:
            value = _small_int(elem) if elem is None or elem.VR not in ("IS", "DS") else _is(elem)
        except (ValueError, TypeError):
            raise InvalidInput(f"{name} ({tag >> 16:04X},{tag & 0xFFFF:04X}) must be a single number but "
                               f"holds {_raw_repr(elem)}", reason="pixel-attributes") from None
        if value is not None:
            return value
        if default is None:
            raise InvalidInput(f"{keyword} is present but {name} ({tag >> 16:04X},{tag & 0xFFFF:04X}) is "
                               f"missing or empty", reason="pixel-attributes")
        if coerced:
            found.append(_warning(COERCION, "COERCION_OF_DATA_ELEMENTS",
                                  f"{name} is missing; {default} assumed"))
        return default

    rows = number(0x00280010, "Rows", None)
    columns = number(0x00280011, "Columns", None)
    bits_allocated = number(0x00280100, "Bits Allocated", None)
    samples = number(0x00280002, "Samples per Pixel", 1)
    frames_elem = ds.get_item(0x00280008, keep_deferred=True)
    try:
        count = _is(frames_elem) if frames_elem is not None else None
    except ValueError:
        raise InvalidInput(f"Number of Frames (0028,0008) is {_raw_repr(frames_elem)}, not an integer, "
                           f"so the Pixel Data cannot be split into frames", reason="pixel-attributes") from None
    count = 1 if count is None else count
    for name, value in (("Rows", rows), ("Columns", columns), ("Samples per Pixel", samples),
                        ("Number of Frames", count)):
        if value < 1:
            raise InvalidInput(f"{name} is {value}; it must be at least 1 when {keyword} is present",
                               reason="pixel-attributes")
    if not (bits_allocated == 1 or (bits_allocated % 8 == 0 and 8 <= bits_allocated <= 64)):
        raise Unsupported(f"Bits Allocated {bits_allocated} is not supported (1 or a multiple of 8 up to 64)",
                          reason="pixel-attributes")
    if keyword != "PixelData" and bits_allocated != (32 if keyword == "FloatPixelData" else 64):
        raise InvalidInput(f"{keyword} needs Bits Allocated {32 if keyword == 'FloatPixelData' else 64}, "
                           f"not {bits_allocated}", reason="pixel-attributes")
    native_int = keyword == "PixelData"  # the Float Pixel modules have no Bits Stored etc.
    bits_stored = number(0x00280101, "Bits Stored", bits_allocated, coerced=native_int)
    high_bit = number(0x00280102, "High Bit", bits_stored - 1, coerced=native_int)
    representation = number(0x00280103, "Pixel Representation", 0, coerced=native_int)
    photometric = _raw_text(ds.get_item(0x00280004, keep_deferred=True))
    if photometric is None:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        found.append(_warning(COERCION, "COERCION_OF_DATA_ELEMENTS",
                              f"Photometric Interpretation is missing; {photometric} assumed"))
    planar = number(0x00280006, "Planar Configuration", 0) if samples > 1 else 0
    return PixelInfo(transfer_syntax_uid=syntax_uid, rows=rows, columns=columns, samples_per_pixel=samples,
                     bits_allocated=bits_allocated, bits_stored=bits_stored, high_bit=high_bit,
                     pixel_representation=representation, photometric_interpretation=photometric,
                     planar_configuration=planar, number_of_frames=count, pixel_keyword=keyword)


def _is(elem: Any) -> int | None:
    """An IS value as int; None if empty; ValueError if not a single integer."""
    value = elem.value
    text = (value.decode("latin-1") if isinstance(value, bytes) else str(value if value is not None else ""))
    text = text.strip(" \x00")
    if not text:
        return None
    if "\\" in text:
        raise ValueError(text)
    return int(text)


def _raw_repr(elem: Any) -> str:
    value = getattr(elem, "value", None)
    if isinstance(value, bytes):
        return repr(value.decode("latin-1").strip(" \x00")) if len(value) <= 64 else f"{len(value)} bytes"
    return repr(value)
