"""WADO-RS: Accept negotiation, instance/series/study retrieval, metadata and frames.

Defaults follow AHI: instances and frames come as Explicit VR Little Endian
(decoded) unless the Accept header asks for `transfer-syntax=*` (as stored) or
another syntax; 406 when none of the acceptable syntaxes can be produced.
Frames asked for as application/octet-stream with transfer-syntax=* are the
stored bytes, labelled `application/octet-stream; transfer-syntax=<stored>`.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tessel.codecs import syntaxes as ts
from tessel.dicomweb import json as dicom_json
from tessel.dicomweb.multipart import parse_media_type, split_accept
from tessel.errors import Unsupported
from tessel.retrieve import instances, pixel_info
from tessel.retrieve.instances import InstanceRef, StoredFrames
from tessel.stores import Stores

OCTET = "application/octet-stream"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"

# Media types of frames in each family of syntaxes (PS3.18 Table 8.7.3-5), stored ones first.
_IMAGE_SYNTAXES: dict[str, tuple[str, ...]] = {
    "image/jphc": (ts.HTJ2K_LOSSLESS_RPCL, ts.HTJ2K_LOSSLESS, ts.HTJ2K),
    "image/j2c": (ts.J2K_LOSSLESS, ts.J2K),
    "image/jpx": (ts.J2K_MC_LOSSLESS, ts.J2K_MC),
    "image/jpeg": (ts.JPEG_BASELINE_8BIT, ts.JPEG_EXTENDED_12BIT, ts.JPEG_LOSSLESS, ts.JPEG_LOSSLESS_SV1),
    "image/jls": (ts.JPEG_LS_LOSSLESS, ts.JPEG_LS_NEAR_LOSSLESS),
    "image/jxl": (ts.JPEG_XL_LOSSLESS, ts.JPEG_XL_JPEG_RECOMPRESSION, ts.JPEG_XL),
    "image/dicom-rle": (ts.RLE_LOSSLESS,),
}
# Names clients use for the same families: older editions of PS3.18 (image/jp2, image/x-jls,
# image/x-dicom-rle), dicomweb-client JS (image/jhc for HTJ2K) and its image/jll (JPEG lossless).
_ALIASES = {"image/jp2": "image/j2c", "image/jhc": "image/jphc", "image/x-jls": "image/jls",
            "image/x-dicom-rle": "image/dicom-rle", "image/jll": "image/jpeg"}
# What a frame in that family is transcoded to when it is not stored so (PS3.18 defaults).
_IMAGE_DEFAULT = {"image/jphc": ts.HTJ2K_LOSSLESS, "image/j2c": ts.J2K_LOSSLESS}


@dataclass(frozen=True, slots=True)
class Accepted:
    """One entry of an Accept header."""

    multipart: bool
    media_type: str  # of the parts, for multipart/related
    transfer_syntax: str | None
    q: float


@functools.lru_cache(maxsize=512)
def parse_accept(header: str | None) -> tuple[Accepted, ...]:
    """Entries best first (by q, then order); an absent header is */*. Clients send the same few
    headers again and again, so parsed ones are kept."""
    entries: list[tuple[float, int, Accepted]] = []
    for index, text in enumerate(split_accept(header or "*/*")):
        media, params = parse_media_type(text)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if media == "multipart/related":
            part = (params.get("type") or "*/*").lower()
            entries.append((-q, index, Accepted(True, part, params.get("transfer-syntax"), q)))
        else:
            entries.append((-q, index, Accepted(False, media, params.get("transfer-syntax"), q)))
    return tuple(e for _, _, e in sorted(entries, key=lambda e: (e[0], e[1])) if e.q > 0)


# -- instances, series, studies -------------------------------------------------------------------

def instance_syntaxes(accept: str | None) -> list[tuple[bool, str | None]]:
    """(multipart, transfer syntax or None for as stored) per acceptable application/dicom entry."""
    out: list[tuple[bool, str | None]] = []
    for entry in parse_accept(accept):
        if entry.media_type not in (DICOM, "*/*", "application/*"):
            continue
        syntax = entry.transfer_syntax
        target = None if syntax == "*" else (syntax or ts.EXPLICIT_VR_LE)
        out.append((entry.multipart or entry.media_type != DICOM, target))
    if not out:
        raise Unsupported("instances are served as application/dicom (multipart/related)")
    return out


# -- metadata --------------------------------------------------------------------------------------

class _MetadataCache:
    """Rendered DICOM JSON per (image set version, series, base URL): documents never change."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], dict[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, bytes] | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: dict[str, bytes]) -> None:
        size = sum(len(v) for v in value.values())
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(len(v) for v in old.values())


METADATA = _MetadataCache()


def _series_metadata(stores: Stores, datastore_id: str, ref: InstanceRef, base_url: str) -> dict[str, bytes]:
    """sop uid -> DICOM JSON bytes of every instance of ref's series in its image set version."""
    key = (id(stores.blobs), datastore_id, ref.image_set_id, ref.version, ref.series_instance_uid, base_url)
    cached = METADATA.get(key)
    if cached is not None:
        return cached
    doc = instances.load_document(stores, datastore_id, ref)
    series = doc["Study"]["Series"][ref.series_instance_uid]
    common = {**doc["Patient"]["DICOM"], **doc["Study"]["DICOM"], **series["DICOM"]}
    study_uid = ref.study_instance_uid
    prefix = f"{base_url}/studies/{study_uid}/series/{ref.series_instance_uid}/instances/"
    common_json = dicom_json.to_dicom_json(common)
    out: dict[str, bytes] = {}
    for sop, node in series["Instances"].items():
        attrs = dict(node["DICOM"])
        if node.get("ImageFrames"):
            # AHI: an instance's metadata names the syntax its frames are stored in, and so the
            # photometric interpretation of those frames (YBR_RCT for colour re-encoded with RCT).
            stored = node.get("StoredTransferSyntaxUID") or ts.HTJ2K_LOSSLESS_RPCL
            attrs["TransferSyntaxUID"] = stored
            info = pixel_info(node)
            if info is not None:
                attrs["PhotometricInterpretation"] = instances.served_photometric(info, stored, stored)
        own = dicom_json.to_dicom_json(attrs, node.get("DICOMVRs") or {},
                                       bulk_uri=lambda bulk_id, sop=sop: f"{prefix}{sop}/bulkdata/{bulk_id}")
        out[sop] = dicom_json.dumps(dict(sorted({**common_json, **own}.items())))
    METADATA.put(key, out)
    return out


def metadata(stores: Stores, datastore_id: str, refs: list[InstanceRef], base_url: str) -> bytes:
    """The DICOM JSON array of `refs`' metadata, in their order."""
    chunks: list[bytes] = []
    by_series: dict[tuple[str, int, str], dict[str, bytes]] = {}
    for ref in refs:
        group = (ref.image_set_id, ref.version, ref.series_instance_uid)
        rendered = by_series.get(group)
        if rendered is None:
            rendered = by_series[group] = _series_metadata(stores, datastore_id, ref, base_url)
        chunks.append(rendered[ref.sop_instance_uid])
    return b"[" + b",".join(chunks) + b"]"


# -- frames ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FrameAnswer:
    transfer_syntax_uid: str
    media_type: str  # of each part (or of the single body)
    multipart: bool


def _decodable(frames: StoredFrames, target: str) -> bool:
    try:
        instances.check_transcodable(frames.info, frames.transfer_syntax_uid, target)
        return True
    except Unsupported:
        return False


def negotiate_frames(frames: StoredFrames, accept: str | None) -> FrameAnswer:
    """The syntax and media type frames are served in, from the Accept header (406 if none works).

    Entries are taken by q value; among entries of equal q (HTTP leaves the choice to the
    server) one that serves the stored bytes beats one that needs transcoding.
    """
    best: tuple[float, int, int, FrameAnswer] | None = None
    for index, entry in enumerate(parse_accept(accept)):
        answer = _frame_answer(frames, entry)
        if answer is None:
            continue
        cost = 0 if answer.transfer_syntax_uid == frames.transfer_syntax_uid else 1
        rank = (-entry.q, cost, index, answer)
        if best is None or rank[:3] < best[:3]:
            best = rank
    if best is None:
        stored = frames.transfer_syntax_uid
        raise Unsupported(f"the frames are stored as {stored} and cannot be served in any acceptable media "
                          f"type ({accept or '*/*'}); ask for transfer-syntax=*", transfer_syntax_uid=stored)
    return best[3]


def _frame_answer(frames: StoredFrames, entry: Accepted) -> FrameAnswer | None:
    """How one Accept entry would be answered, or None if it cannot be."""
    stored = frames.transfer_syntax_uid
    stored_media = ts.media_type(stored)
    media, syntax = entry.media_type, entry.transfer_syntax
    multipart = entry.multipart or len(frames.numbers) > 1
    if media in (OCTET, "*/*", "application/*"):
        if syntax == "*":
            return FrameAnswer(stored, OCTET if media == OCTET else stored_media, multipart)
        target = syntax or ts.EXPLICIT_VR_LE
        if target in instances.NATIVE_OUTPUTS and syntax is None and not _decodable(frames, target):
            return FrameAnswer(stored, OCTET, multipart)  # cannot decode: the stored pixels (as AHI)
        if _decodable(frames, target):
            label = OCTET if target in instances.NATIVE_OUTPUTS or media == OCTET else ts.media_type(target)
            return FrameAnswer(target, label, multipart)
        return None
    if media in ("image/*", "video/*"):
        return FrameAnswer(stored, stored_media, multipart) if stored_media.startswith(media[:-1]) else None
    family = _IMAGE_SYNTAXES.get(_ALIASES.get(media, media))
    if family is None:
        if media.startswith("video/") and stored_media == media and syntax in (None, "*", stored):
            return FrameAnswer(stored, media, multipart)
        return None
    if syntax in (None, "*", stored) and stored in family:
        return FrameAnswer(stored, media, multipart)
    target = syntax if syntax not in (None, "*") else _IMAGE_DEFAULT.get(_ALIASES.get(media, media))
    if target is not None and target in family and _decodable(frames, target):
        return FrameAnswer(target, media, multipart)
    return None


def frame_parts(frames: StoredFrames, answer: FrameAnswer) -> Iterator[bytes]:
    if answer.transfer_syntax_uid == frames.transfer_syntax_uid:
        yield from frames.data
        return
    yield from instances.frames_in(frames, answer.transfer_syntax_uid)
