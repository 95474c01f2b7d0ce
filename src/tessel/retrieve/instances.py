"""DICOM-addressed reads: instances by UIDs, frames by number, transcoded on demand.

Primary image sets are found through the query index (one lookup); an explicit
image set id (`?imageSetId=` in DICOMweb) looks in that image set's own rows.
Frames in the stored syntax are one catalog lookup plus one blob read each.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Sequence

import sqlalchemy as sa

from tessel import codecs, documents
from tessel.blobs import keys
from tessel.catalog.models import ImageSetState
from tessel.catalog.sql.tables import (dicom_instances, dicom_series, frames, image_set_versions, image_sets,
                                       instances)
from tessel.codecs import syntaxes as ts
from tessel.codecs.native import encode_native
from tessel.codecs.plan import fits_j2k, uses_rct
from tessel.dicom.models import PixelInfo
from tessel.errors import NotFound, Unsupported
from tessel.retrieve import pixel_info
from tessel.stores import Stores

HTJ2K_FAMILY = frozenset({ts.HTJ2K_LOSSLESS, ts.HTJ2K_LOSSLESS_RPCL, ts.HTJ2K})
NATIVE_OUTPUTS = frozenset({ts.EXPLICIT_VR_LE, ts.IMPLICIT_VR_LE})
_ENCODABLE = frozenset({ts.HTJ2K_LOSSLESS, ts.HTJ2K_LOSSLESS_RPCL, ts.J2K_LOSSLESS})
_DECODED_PHOTOMETRIC = {"YBR_FULL_422": "YBR_FULL", "YBR_RCT": "RGB", "YBR_ICT": "RGB"}


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Where one instance is: its image set (and version) and what its frames are stored as."""

    image_set_id: str
    version: int
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    number_of_frames: int
    stored_transfer_syntax_uid: str | None


@dataclass(frozen=True)
class StoredFrames:
    """Frames of one instance in the stored syntax, with what decoding them needs. Their bytes are
    read on first use of `data` (a frame served from the transcoded cache is never read)."""

    ref: InstanceRef
    node: dict[str, Any]  # an instance node holding (at least) the pixel attributes
    numbers: tuple[int, ...]
    ids: tuple[str, ...]  # image frame ids, as numbers
    read: Callable[[str], bytes]  # frame id -> stored bytes

    @property
    def data(self) -> tuple[bytes, ...]:
        # Not functools.cached_property: before Python 3.12 it holds one lock for every instance
        # while computing, which made the blob reads of all concurrent frame requests take turns.
        data: tuple[bytes, ...] | None = self.__dict__.get("_data")
        if data is None:
            data = self.__dict__["_data"] = tuple(self.read(frame_id) for frame_id in self.ids)
        return data

    @property
    def transfer_syntax_uid(self) -> str:
        return self.ref.stored_transfer_syntax_uid or ts.HTJ2K_LOSSLESS_RPCL

    @property
    def info(self) -> PixelInfo:
        info = pixel_info(self.node)
        if info is None:
            raise NotFound(f"instance {self.ref.sop_instance_uid} has no pixel data")
        return info


# -- locating --------------------------------------------------------------------------------------

def locate(catalog: Any, datastore_id: str, study_uid: str, series_uid: str | None = None,
           sop_uid: str | None = None, *, image_set_id: str | None = None) -> list[InstanceRef]:
    """The instances of a study / series / one instance, in series and instance number order.

    Primary image sets only, unless `image_set_id` names one (primary or not). NotFound if none.
    """
    if image_set_id is not None:
        refs = _locate_in(catalog, datastore_id, image_set_id, study_uid, series_uid, sop_uid)
    elif series_uid is not None and sop_uid is not None:  # one instance (WADO-RS instance): a hot read
        refs = [InstanceRef(*row) for row in catalog.hot.rows(_INSTANCE_QUERY, {
            "datastore_id": datastore_id, "study": study_uid, "series": series_uid, "sop": sop_uid})]
    else:
        i, s = dicom_instances, dicom_series
        q = (sa.select(i.c.image_set_id, s.c.version, i.c.study_instance_uid, i.c.series_instance_uid,
                       i.c.sop_instance_uid, i.c.sop_class_uid, i.c.number_of_frames,
                       i.c.stored_transfer_syntax_uid)
             .join(s, sa.and_(s.c.image_set_id == i.c.image_set_id,
                              s.c.series_instance_uid == i.c.series_instance_uid))
             .where(i.c.datastore_id == datastore_id, i.c.study_instance_uid == study_uid))
        if series_uid is not None:
            q = q.where(i.c.series_instance_uid == series_uid)
        if sop_uid is not None:
            q = q.where(i.c.sop_instance_uid == sop_uid)
        q = q.order_by(s.c.series_number.is_(None), s.c.series_number, i.c.series_instance_uid,
                       i.c.instance_number.is_(None), i.c.instance_number, i.c.sop_instance_uid)
        with catalog.read() as conn:
            refs = [InstanceRef(*row) for row in conn.execute(q)]
    if not refs:
        what = f"instance {sop_uid}" if sop_uid else f"series {series_uid}" if series_uid else f"study {study_uid}"
        raise NotFound(f"{what} is not in datastore {datastore_id}", study_instance_uid=study_uid)
    return refs


_INSTANCE_QUERY = (
    sa.select(dicom_instances.c.image_set_id, dicom_series.c.version, dicom_instances.c.study_instance_uid,
              dicom_instances.c.series_instance_uid, dicom_instances.c.sop_instance_uid,
              dicom_instances.c.sop_class_uid, dicom_instances.c.number_of_frames,
              dicom_instances.c.stored_transfer_syntax_uid)
    .join(dicom_series, sa.and_(dicom_series.c.image_set_id == dicom_instances.c.image_set_id,
                                dicom_series.c.series_instance_uid == dicom_instances.c.series_instance_uid))
    .where(dicom_instances.c.datastore_id == sa.bindparam("datastore_id"),
           dicom_instances.c.sop_instance_uid == sa.bindparam("sop"),
           dicom_instances.c.study_instance_uid == sa.bindparam("study"),
           dicom_instances.c.series_instance_uid == sa.bindparam("series")))


def _locate_in(catalog: Any, datastore_id: str, image_set_id: str, study_uid: str, series_uid: str | None,
               sop_uid: str | None) -> list[InstanceRef]:
    i = instances
    q = (sa.select(i.c.image_set_id, image_sets.c.latest_version, i.c.study_instance_uid,
                   i.c.series_instance_uid, i.c.sop_instance_uid, i.c.sop_class_uid, i.c.number_of_frames,
                   i.c.stored_transfer_syntax_uid)
         .join(image_sets, image_sets.c.id == i.c.image_set_id)
         .where(i.c.image_set_id == image_set_id, image_sets.c.datastore_id == datastore_id,
                image_sets.c.state != ImageSetState.DELETED.value, i.c.study_instance_uid == study_uid))
    if series_uid is not None:
        q = q.where(i.c.series_instance_uid == series_uid)
    if sop_uid is not None:
        q = q.where(i.c.sop_instance_uid == sop_uid)
    q = q.order_by(i.c.series_instance_uid, i.c.instance_number.is_(None), i.c.instance_number,
                   i.c.sop_instance_uid)
    with catalog.read() as conn:
        return [InstanceRef(*row) for row in conn.execute(q)]


def instance_attributes(stores: Stores, datastore_id: str, ref: InstanceRef,
                        primary: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """(instance-level attributes, DICOMVRs) of an instance: from the query index for primary
    image sets (no document read), else from its document."""
    if primary:
        with stores.catalog.read() as conn:
            row = conn.execute(sa.select(dicom_instances.c.attrs, dicom_instances.c.vrs).where(
                dicom_instances.c.image_set_id == ref.image_set_id,
                dicom_instances.c.sop_instance_uid == ref.sop_instance_uid)).first()
        if row is not None:
            return json.loads(row.attrs), json.loads(row.vrs) if row.vrs else {}
    node = instance_node(load_document(stores, datastore_id, ref), ref)
    return dict(node["DICOM"]), dict(node.get("DICOMVRs") or {})


# -- documents (immutable per version, so a few stay decoded) ------------------------------------

class _DocumentCache:
    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stores: Stores, datastore_id: str, image_set_id: str, version: int) -> dict[str, Any]:
        key = (id(stores.blobs), keys.metadata(datastore_id, image_set_id, version))
        with self._lock:
            doc = self._items.get(key)
            if doc is not None:
                self._items.move_to_end(key)
                return doc
        with stores.catalog.read() as conn:
            row = conn.execute(sa.select(image_set_versions.c.metadata_key).where(
                image_set_versions.c.image_set_id == image_set_id,
                image_set_versions.c.version_id == version)).first()
        if row is None:
            raise NotFound(f"image set {image_set_id} has no version {version}")
        doc = documents.decode(stores.blobs.get(row.metadata_key))
        with self._lock:
            self._items[key] = doc
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return doc


DOCUMENTS = _DocumentCache()


def load_document(stores: Stores, datastore_id: str, ref: InstanceRef) -> dict[str, Any]:
    """The document of the image set version `ref` was found in (shared: do not modify it)."""
    return DOCUMENTS.get(stores, datastore_id, ref.image_set_id, ref.version)


def instance_node(doc: dict[str, Any], ref: InstanceRef) -> dict[str, Any]:
    try:
        node: dict[str, Any] = doc["Study"]["Series"][ref.series_instance_uid]["Instances"][ref.sop_instance_uid]
    except KeyError:
        raise NotFound(f"instance {ref.sop_instance_uid} is not in image set {ref.image_set_id}") from None
    return node


# -- frames ---------------------------------------------------------------------------------------

# Built once: SQLAlchemy then reuses its compiled form, and building the statement cost more
# than running it.
_FRAME_COLUMNS = (dicom_instances.c.image_set_id, dicom_instances.c.study_instance_uid,
                  dicom_instances.c.series_instance_uid, dicom_instances.c.sop_class_uid,
                  dicom_instances.c.number_of_frames, dicom_instances.c.stored_transfer_syntax_uid,
                  dicom_instances.c.pixel, frames.c.frame_number, frames.c.frame_id)
_FRAMES_FROM = dicom_instances.join(frames, sa.and_(frames.c.image_set_id == dicom_instances.c.image_set_id,
                                                    frames.c.sop_instance_uid == dicom_instances.c.sop_instance_uid))
_FRAMES_QUERY = (
    sa.select(*_FRAME_COLUMNS).select_from(_FRAMES_FROM)
    .where(dicom_instances.c.datastore_id == sa.bindparam("datastore_id"),
           dicom_instances.c.sop_instance_uid == sa.bindparam("sop"),
           frames.c.frame_number.in_(sa.bindparam("numbers", expanding=True))))
# One frame (what viewers ask for): a single SELECT on the catalog's hot-read connections.
_FRAME_QUERY = (
    sa.select(*_FRAME_COLUMNS).select_from(_FRAMES_FROM)
    .where(dicom_instances.c.datastore_id == sa.bindparam("datastore_id"),
           dicom_instances.c.sop_instance_uid == sa.bindparam("sop"),
           frames.c.frame_number == sa.bindparam("number")))


class _FrameRow(NamedTuple):
    image_set_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str | None
    number_of_frames: int
    stored_transfer_syntax_uid: str | None
    pixel: str | None
    frame_number: int
    frame_id: str


def get_frames(stores: Stores, datastore_id: str, study_uid: str, series_uid: str, sop_uid: str,
               numbers: Sequence[int], *, image_set_id: str | None = None) -> StoredFrames:
    """Frames `numbers` (1-based) of an instance, as stored: one catalog lookup, one read per frame."""
    if not numbers or any(n < 1 for n in numbers):
        raise NotFound("frame numbers start at 1")
    if image_set_id is not None:
        return _frames_via_document(stores, datastore_id, study_uid, series_uid, sop_uid, numbers, image_set_id)
    if len(numbers) == 1:
        found = stores.catalog.hot.rows(_FRAME_QUERY, {"datastore_id": datastore_id, "sop": sop_uid,
                                                       "number": numbers[0]})
    else:
        with stores.catalog.read() as conn:
            found = list(conn.execute(_FRAMES_QUERY, {"datastore_id": datastore_id, "sop": sop_uid,
                                                      "numbers": sorted(set(numbers))}))
    rows = [r for r in map(_FrameRow._make, found)
            if r.study_instance_uid == study_uid and r.series_instance_uid == series_uid]
    by_number = {r.frame_number: r for r in rows}
    missing = [n for n in numbers if n not in by_number]
    if not rows or missing:
        raise NotFound(f"instance {sop_uid} has no frame {missing[0] if rows else numbers[0]}"
                       if rows else f"instance {sop_uid} is not in series {series_uid} of study {study_uid}")
    first = rows[0]
    ref = InstanceRef(first.image_set_id, 0, study_uid, series_uid, sop_uid, first.sop_class_uid,
                      first.number_of_frames, first.stored_transfer_syntax_uid)
    node = _pixel_node(first.pixel) if first.pixel else {"DICOM": {}}
    return StoredFrames(ref, node, tuple(numbers), tuple(by_number[n].frame_id for n in numbers),
                        _reader(stores, datastore_id))


@functools.lru_cache(maxsize=4096)
def _pixel_node(text: str) -> dict[str, Any]:
    """An instance's pixel attributes (the query row's JSON), parsed once: viewers ask for frame
    after frame of the same instances. Shared: read it, never change it."""
    node: dict[str, Any] = json.loads(text)
    return node


def _frames_via_document(stores: Stores, datastore_id: str, study_uid: str, series_uid: str, sop_uid: str,
                         numbers: Sequence[int], image_set_id: str) -> StoredFrames:
    (ref,) = locate(stores.catalog, datastore_id, study_uid, series_uid, sop_uid, image_set_id=image_set_id)
    node = instance_node(load_document(stores, datastore_id, ref), ref)
    image_frames = node.get("ImageFrames") or []
    missing = [n for n in numbers if n > len(image_frames)]
    if missing:
        raise NotFound(f"instance {sop_uid} has no frame {missing[0]}")
    return StoredFrames(ref, node, tuple(numbers), tuple(image_frames[n - 1]["ID"] for n in numbers),
                        _reader(stores, datastore_id))


def _reader(stores: Stores, datastore_id: str) -> Callable[[str], bytes]:
    return lambda frame_id: stores.blobs.get(keys.frame(datastore_id, frame_id))


def output_syntax(requested: str | None, stored: str) -> str:
    """The syntax frames are served in: None or '*' is the stored one."""
    if requested in (None, "*"):
        return stored
    return requested


def check_transcodable(info: PixelInfo, stored: str, target: str) -> None:
    """Unsupported (HTTP 406) unless frames stored as `stored` can be served as `target`."""
    if target == stored or (target == ts.HTJ2K_LOSSLESS and stored == ts.HTJ2K_LOSSLESS_RPCL):
        return
    row = ts.syntax(stored)
    decodable = row is not None and row.layout in (ts.Layout.NATIVE, ts.Layout.COMPRESSED,
                                                   ts.Layout.ENCAPSULATED_NATIVE, ts.Layout.DEFLATED_FRAME)
    if target in NATIVE_OUTPUTS and decodable:
        return
    if target in _ENCODABLE and decodable and row is not None and row.lossless and fits_j2k(info):
        return
    raise Unsupported(f"frames stored as {stored} cannot be served as {target}", transfer_syntax_uid=target)


def transcode(data: bytes, info: PixelInfo, stored: str, target: str) -> bytes:
    """One stored frame in `target` (call check_transcodable first)."""
    if target == stored or (target == ts.HTJ2K_LOSSLESS and stored == ts.HTJ2K_LOSSLESS_RPCL):
        return data
    try:
        pixels = codecs.decode_stored(data, info, stored)
        if target in NATIVE_OUTPUTS:
            return encode_native(pixels, decoded_info(info, stored))
        return codecs.encode_frame(pixels, decoded_info(info, stored), target)
    except codecs.CodecError as exc:
        raise Unsupported(f"frame cannot be served as {target}: {exc.message}", transfer_syntax_uid=target) from exc


def decoded_info(info: PixelInfo, stored: str) -> PixelInfo:
    """The pixel description of a decoded frame: interleaved, full resolution, RGB after RCT/ICT."""
    photometric = decoded_photometric(info, stored)
    return replace(info, transfer_syntax_uid=ts.EXPLICIT_VR_LE, photometric_interpretation=photometric,
                   planar_configuration=0)


def decoded_photometric(info: PixelInfo, stored: str) -> str:
    del stored  # every decoder tessel uses returns RGB for RCT/ICT and full-resolution YBR
    return _DECODED_PHOTOMETRIC.get(info.photometric_interpretation, info.photometric_interpretation)


def served_photometric(info: PixelInfo, stored: str, target: str) -> str:
    """Photometric Interpretation of frames served as `target` from frames stored as `stored`."""
    if target in NATIVE_OUTPUTS:
        return decoded_photometric(info, stored)
    if target in _ENCODABLE and target != stored and not (
            target == ts.HTJ2K_LOSSLESS and stored == ts.HTJ2K_LOSSLESS_RPCL):
        decoded = decoded_info(info, stored)
        return "YBR_RCT" if uses_rct(decoded) else decoded.photometric_interpretation
    # As stored: what ingest's storage plan made of the source (transcoded), or the source's own.
    source = info.transfer_syntax_uid
    if stored != source and source in ts.TRANSCODABLE:
        return codecs.storage_plan(info, stored if stored in ts.LOSSLESS_FORMATS else
                                   ts.HTJ2K_LOSSLESS_RPCL).stored_photometric
    return info.photometric_interpretation


class _TranscodedFrames:
    """Frames lately served in a syntax they are not stored in, by (frame id, syntax): decoding an
    HTJ2K CT frame costs milliseconds and viewers ask for the same frames again. Frame ids name
    immutable content, so an entry never goes stale; least recently used ones leave first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[str, str], data: bytes) -> None:
        if len(data) > self.max_bytes // 8:
            return  # one huge frame would push everything else out
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)

    @property
    def size(self) -> int:
        return self._bytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes
            while self._items and self._bytes > max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


TRANSCODED = _TranscodedFrames(256 * 1024 * 1024)


def ready_in(stored: StoredFrames, target: str) -> bool:
    """Can `stored` be had in `target` without decoding (as stored, or transcoded lately)?"""
    return target == stored.transfer_syntax_uid or all(TRANSCODED.get((i, target)) is not None for i in stored.ids)


def frames_in(stored: StoredFrames, target: str) -> list[bytes]:
    """The frames of `stored` in `target` (Unsupported if that cannot be produced)."""
    info = stored.info
    check_transcodable(info, stored.transfer_syntax_uid, target)
    out = []
    for index, frame_id in enumerate(stored.ids):
        key = (frame_id, target)
        data = TRANSCODED.get(key)
        if data is None:
            data = transcode(stored.data[index], info, stored.transfer_syntax_uid, target)
            TRANSCODED.put(key, data)
        out.append(data)
    return out


def read_bulk(stores: Stores, datastore_id: str, bulk_id: str) -> bytes:
    """A bulk data value (a binary attribute over 1 MB, stored apart from the document)."""
    return stores.blobs.get(keys.bulk(datastore_id, bulk_id))
