"""STOW-RS: a spooled multipart/related (or single application/dicom) body -> ingest.store_instances.

Parts are read from the spooled body one at a time and stored in batches of
at most BATCH_BYTES, each batch one `store_instances` call (so one new version
per touched image set and batch). The answer is the PS3.18 Store Instances
Response: ReferencedSOPSequence (with RetrieveURL, and WarningReason when
ingest warned), FailedSOPSequence (with FailureReason), and the study's
RetrieveURL. Status: 200 all stored, 202 some failed, 409 all failed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from tessel.dicomweb import json as dicom_json
from tessel.dicomweb.errors import UnsupportedMediaType
from tessel.dicomweb.multipart import iter_parts, parse_media_type
from tessel.errors import InvalidInput
from tessel.ingest import store_instances
from tessel.stores import Stores

MAX_BODY = 1 << 30  # AHI: at most 1 GB per STOW-RS request
BATCH_BYTES = 256 * 1024 * 1024

# Failure reasons (PS3.4 Table B.2-1 and PS3.18 10.5.3.2).
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
STUDY_MISMATCH = 0xA900  # "Data Set does not match SOP Class": here, not the study the URL names
NOT_DICOM_PART = 0xC122  # a part that is not application/dicom


@dataclass(slots=True)
class Outcome:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    failure: int | None = None
    message: str | None = None
    warning: int | None = None
    image_set_id: str | None = None
    primary: bool = True


def _uids(data: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(SOP class, SOP instance, study, series) UIDs from the header; Nones if unreadable."""
    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True,
                     specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError, AttributeError,
            NotImplementedError, RecursionError):
        return None, None, None, None

    def get(keyword: str) -> str | None:
        try:
            value = ds.get(keyword)
        except (ValueError, TypeError):
            return None
        return str(value).strip("\x00 ") or None if value is not None else None

    return get("SOPClassUID"), get("SOPInstanceUID"), get("StudyInstanceUID"), get("SeriesInstanceUID")


def part_ranges(buf: Any, content_type: str) -> list[tuple[int, int, str]]:
    """(start, end, media type) of each instance in the body."""
    media, params = parse_media_type(content_type)
    if media == "application/dicom":
        return [(0, len(buf), media)]
    if media != "multipart/related":
        raise UnsupportedMediaType(f"STOW-RS takes multipart/related or application/dicom, not {media}")
    kind = (params.get("type") or "application/dicom").lower()
    if kind != "application/dicom":
        raise UnsupportedMediaType(f"STOW-RS takes application/dicom parts, not {kind} (no JSON+bulk data)")
    boundary = params.get("boundary")
    if not boundary:
        raise InvalidInput("the multipart/related Content-Type has no boundary")
    return [(p.start, p.end, p.content_type) for p in iter_parts(buf, boundary)]


def store(stores: Stores, datastore_id: str, buf: Any, content_type: str, study_uid: str | None,
          base_url: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Store Instances Response in DICOM JSON) for a spooled body."""
    ranges = part_ranges(buf, content_type)
    if not ranges:
        raise InvalidInput("the request holds no instances")
    outcomes: list[Outcome] = []
    batch: list[tuple[Outcome, bytes]] = []
    batch_bytes = 0
    for start, end, media in ranges:
        if media != "application/dicom":
            outcomes.append(Outcome(None, None, None, None, NOT_DICOM_PART, f"a {media} part is not an instance"))
            continue
        data = bytes(buf[start:end])
        outcome = Outcome(*_uids(data))
        outcomes.append(outcome)
        if study_uid is not None and outcome.study_instance_uid not in (None, study_uid):
            outcome.failure = STUDY_MISMATCH
            outcome.message = (f"the instance's Study Instance UID {outcome.study_instance_uid} is not the "
                               f"study {study_uid} the request names")
            continue
        batch.append((outcome, data))
        batch_bytes += len(data)
        if batch_bytes >= BATCH_BYTES:
            _store_batch(stores, datastore_id, batch, study_uid)
            batch, batch_bytes = [], 0
    if batch:
        _store_batch(stores, datastore_id, batch, study_uid)
    return _response(outcomes, base_url)


def _store_batch(stores: Stores, datastore_id: str, batch: list[tuple[Outcome, bytes]],
                 study_uid: str | None) -> None:
    results = store_instances(stores, datastore_id, [data for _, data in batch])
    for (outcome, _), result in zip(batch, results):
        outcome.sop_class_uid = result.sop_class_uid or outcome.sop_class_uid
        outcome.sop_instance_uid = result.sop_instance_uid or outcome.sop_instance_uid
        if result.failure is not None:
            outcome.failure, outcome.message = CANNOT_UNDERSTAND, result.failure
            continue
        if study_uid is not None and outcome.study_instance_uid is None:
            outcome.study_instance_uid = study_uid
        if result.placement is not None:
            outcome.image_set_id = result.placement.image_set_id
            outcome.primary = result.placement.is_primary
        codes = [w.get("warning_reason_code") for w in result.warnings if w.get("warning_reason_code")]
        if codes:
            outcome.warning = int(codes[0])


def _instance_url(base_url: str, o: Outcome) -> str | None:
    if not (o.study_instance_uid and o.series_instance_uid and o.sop_instance_uid):
        return None
    url = f"{base_url}/studies/{o.study_instance_uid}/series/{o.series_instance_uid}/instances/{o.sop_instance_uid}"
    # DICOMweb shows primary image sets; an instance that went to a non-primary one is reached by id.
    return url if o.primary or o.image_set_id is None else f"{url}?imageSetId={o.image_set_id}"


def _reference(o: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if o.sop_class_uid:
        item["00081150"] = dicom_json.element("UI", o.sop_class_uid)
    if o.sop_instance_uid:
        item["00081155"] = dicom_json.element("UI", o.sop_instance_uid)
    return item


def _response(outcomes: list[Outcome], base_url: str) -> tuple[int, dict[str, Any]]:
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    body: dict[str, Any] = {}
    studies = {o.study_instance_uid for o in stored if o.study_instance_uid}
    if len(studies) == 1:
        body["00081190"] = dicom_json.element("UR", f"{base_url}/studies/{next(iter(studies))}")
    if failed:
        items = []
        for o in failed:
            item = _reference(o)
            item["00081197"] = dicom_json.element("US", o.failure)
            if o.message:
                item["00000902"] = dicom_json.element("LO", o.message[:1024])  # Error Comment: why
            items.append(dict(sorted(item.items())))
        body["00081198"] = {"vr": "SQ", "Value": items}
    if stored:
        items = []
        for o in stored:
            item = _reference(o)
            url = _instance_url(base_url, o)
            if url:
                item["00081190"] = dicom_json.element("UR", url)
            if o.warning is not None:
                item["00081196"] = dicom_json.element("US", o.warning)
            items.append(dict(sorted(item.items())))
        body["00081199"] = {"vr": "SQ", "Value": items}
    status = 200 if not failed else 409 if not stored else 202
    return status, dict(sorted(body.items()))
