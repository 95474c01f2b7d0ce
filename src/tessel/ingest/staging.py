"""Turn one Part 10 file into a staged instance: frames and bulk data stored, metadata ready.

This is the CPU-bound half of ingest and runs in worker processes. It writes
only immutable, content-derived blobs (frames, bulk data), so running it twice
on the same file is harmless; nothing is visible until `assemble` commits it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessel import codecs
from tessel.blobs import BlobStore, keys
from tessel.dicom import instance_levels, read_bulk, read_frame, read_instance, read_instance_bytes
from tessel.dicom.models import ParsedInstance
from tessel.errors import InvalidInput, NotFound, TesselError

log = logging.getLogger("tessel.ingest")

# The elements that decide whether an instance agrees with the image set it joins (spec section 3).
STUDY_KEYS = ("PatientID", "StudyDate", "AccessionNumber", "StudyID")
SERIES_KEYS = ("SeriesNumber",)


@dataclass(frozen=True, slots=True)
class StagingOptions:
    datastore_id: str
    lossless_format: str = codecs.HTJ2K_LOSSLESS_RPCL
    bulk_threshold: int = 1_048_576
    frame_threads: int = 1  # threads transcoding the frames of one multi-frame instance


def stage_file(path: str | Path, blobs: BlobStore, options: StagingOptions) -> dict[str, Any]:
    return stage_parsed(read_instance(path, bulk_threshold=options.bulk_threshold), blobs, options,
                        size=Path(path).stat().st_size)


def stage_bytes(data: bytes, blobs: BlobStore, options: StagingOptions) -> dict[str, Any]:
    return stage_parsed(read_instance_bytes(data, bulk_threshold=options.bulk_threshold), blobs, options,
                        size=len(data))


def _id(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def stage_parsed(parsed: ParsedInstance, blobs: BlobStore, options: StagingOptions,
                 *, size: int) -> dict[str, Any]:
    """Store frames and bulk data; return the staged instance (JSON-serialisable)."""
    written: list[str] = []
    try:
        image_frames, frame_rows, stored_ts, warnings = _store_frames(parsed, blobs, options, written)
        bulk_ids: dict[str, str] = {}
        for ref in parsed.bulk:
            data = read_bulk(parsed, ref)
            bulk_id = _id(options.datastore_id, data)
            _put_once(blobs, keys.bulk(options.datastore_id, bulk_id), data, written)
            bulk_ids[ref.tag] = bulk_id
        levels = instance_levels(parsed, bulk_ids)
    except BaseException:
        for key in written:  # a rejected file leaves nothing behind
            blobs.delete(key)
        raise

    instance_node: dict[str, Any] = {"DICOM": levels.instance, "DICOMVRs": levels.vrs}
    if stored_ts is not None:
        instance_node["StoredTransferSyntaxUID"] = stored_ts
    instance_node["ImageFrames"] = image_frames
    keys_study = {k: levels.study.get(k, levels.patient.get(k)) for k in STUDY_KEYS}
    keys_series = {k: levels.series.get(k) for k in SERIES_KEYS}
    body = {"patient": levels.patient, "study": levels.study, "series": levels.series,
            "instance": instance_node}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    instance_number = levels.instance.get("InstanceNumber")
    try:
        number = int(str(instance_number).strip()) if instance_number not in (None, "") else None
    except ValueError:
        number = None
    return {
        **body,
        "sop_instance_uid": parsed.sop_instance_uid,
        "sop_class_uid": parsed.sop_class_uid,
        "study_instance_uid": parsed.study_instance_uid,
        "series_instance_uid": parsed.series_instance_uid,
        "instance_number": number,
        "stored_transfer_syntax_uid": stored_ts,
        "study_keys": keys_study,
        "series_keys": keys_series,
        "frames": frame_rows,
        "warnings": list(parsed.warnings) + warnings,
        "digest": digest,
        "size": size,
    }


def _store_frames(parsed: ParsedInstance, blobs: BlobStore, options: StagingOptions,
                  written: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None,
                                               list[dict[str, Any]]]:
    info = parsed.pixel
    if info is None or not parsed.frames:
        return [], [], None, []
    plan = codecs.storage_plan(info, options.lossless_format)

    def store(index: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        return _store_frame(parsed, index, plan, blobs, options, written)

    threads = min(options.frame_threads, len(parsed.frames))
    if threads <= 1:
        results = [store(index) for index in range(len(parsed.frames))]
    else:
        # The codecs, CRC32 and file writes release the GIL, so one large multi-frame file
        # (a whole-slide level) keeps every core busy. Each thread reads its own frame:
        # memory stays at a few frames whatever the file size.
        executor = ThreadPoolExecutor(threads, thread_name_prefix="tessel-frames")
        try:
            results = list(executor.map(store, range(len(parsed.frames))))
        finally:
            executor.shutdown(wait=True, cancel_futures=True)  # a failed frame stops the rest
    warnings = [w for _, _, w in results if w is not None][:1]  # the first says it for all frames
    return ([entry for entry, _, _ in results], [row for _, row, _ in results],
            plan.stored_transfer_syntax_uid, warnings)


def _store_frame(parsed: ParsedInstance, index: int, plan: codecs.StoragePlan, blobs: BlobStore,
                 options: StagingOptions, written: list[str]
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Decode, checksum, transcode, verify and store frame `index`: (ImageFrames entry, row, warning)."""
    info = parsed.pixel
    assert info is not None
    raw = read_frame(parsed, index)
    entry: dict[str, Any] = {}
    warning = None
    try:
        pixels = codecs.decode_frame(raw, info, bit_offset=parsed.frames[index].bit_offset)
    except codecs.CodecError as exc:
        if plan.transcode:
            raise InvalidInput(f"frame {index + 1} cannot be decoded, so it cannot be stored "
                               f"losslessly: {exc.message}") from None
        pixels = None
        warning = {"warning_reason_code": 45312, "type": "TRANSCODING_EXCEPTION",
                   "message": f"frames kept as stored; they could not be decoded to "
                              f"compute checksums: {exc.message}"}
    if pixels is not None:
        checksum = codecs.frame_checksum(pixels)
        entry["PixelDataChecksumFromBaseToFullResolution"] = [
            {"Width": info.columns, "Height": info.rows, "Checksum": checksum}]
        entry["MinPixelValue"] = _scalar(pixels.min())
        entry["MaxPixelValue"] = _scalar(pixels.max())
    if plan.transcode:
        assert pixels is not None
        stored = _transcode_verified(pixels, info, plan.stored_transfer_syntax_uid, checksum, index)
    else:
        stored = raw
    frame_id = _id(options.datastore_id, parsed.sop_instance_uid, str(index), stored)
    _put_once(blobs, keys.frame(options.datastore_id, frame_id), stored, written)
    frame_size = (info.rows * info.columns * info.samples_per_pixel * info.bits_allocated + 7) // 8
    entry = {"ID": frame_id, **entry, "FrameSizeInBytes": frame_size}
    row = {"frame_id": frame_id, "frame_number": index + 1,
           "transfer_syntax_uid": plan.stored_transfer_syntax_uid, "size": len(stored)}
    return entry, row, warning


def _transcode_verified(pixels: Any, info: Any, syntax: str, checksum: int, index: int) -> bytes:
    """The frame re-encoded in `syntax`, decoded again and checked against the source CRC32.
    A frame that fails (a codec error, or a CRC mismatch: imagecodecs prints some OpenJPH decode
    errors instead of raising them) is encoded once more before it fails the instance, in case
    the codec misbehaved once (see codecs.frames._warm_up_openjph for the one cause found). No
    retry can store wrong pixels: what is stored is what passed the check."""
    for attempt in (1, 2):
        try:
            stored = codecs.encode_frame(pixels, info, syntax)
            check = codecs.frame_checksum(codecs.decode_stored(stored, info, syntax))
        except codecs.CodecError as exc:
            if attempt == 2:
                raise
            log.warning("frame %d: %s; trying once more", index + 1, exc.message)
            continue
        if check == checksum:
            return stored
        if attempt == 1:
            log.warning("frame %d: the re-encoded frame does not decode to the source pixels; trying once more",
                        index + 1)
    raise InvalidInput(f"frame {index + 1}: the re-encoded frame does not decode to the "
                       f"source pixels (CRC32 {check} != {checksum}); nothing was stored")


def _put_once(blobs: BlobStore, key: str, data: bytes, written: list[str]) -> None:
    """Store a content-named blob unless the same bytes are there already (an identical
    re-import writes nothing). A blob that is there but differs (damaged, or cut short by a
    crash before it was synced) is written again; only blobs that were absent go on
    `written`, the list a failed file's clean-up deletes."""
    try:
        if blobs.get(key) == data:
            return
        absent = False
    except NotFound:
        absent = True
    except TesselError:  # there but unreadable (it fails its integrity check): replace it
        absent = False
    blobs.put(key, data)
    if absent:
        written.append(key)


def _scalar(value: Any) -> int | float:
    item = value.item() if hasattr(value, "item") else value
    return item if isinstance(item, (int, float)) else float(item)
