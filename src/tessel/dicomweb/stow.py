"""STOW-RS: multipart/related (or one application/dicom) bodies -> ingest, streamed part by part.

An `Upload` parses the body as it arrives. Each part goes to memory (or to a
temporary file past SPOOL_IN_MEMORY bytes) and, once complete, is staged on the
staging pool (frames and bulk data written, nothing visible yet) while the next
part is still being received; at most MAX_IN_FLIGHT parts wait, so a fast
client is slowed down rather than filling memory. When the body has ended, every
staged instance is committed together through the server's ingest writer (group commit:
durable and readable when the response is sent; ingest/writer.py) and the PS3.18 Store Instances Response is rendered:
ReferencedSOPSequence (RetrieveURL, WarningReason), FailedSOPSequence
(FailureReason, with the reason in words as Error Comment) and the study's
RetrieveURL. Status (PS3.18 Table 10.5.3-1): 200 all stored, 202 stored with
warnings or some failures, 409 none stored. A malformed body, an oversize one
or a dropped connection commits nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import io
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from tessel.dicomweb import json as dicom_json
from tessel.dicomweb.errors import UnsupportedMediaType
from tessel.dicomweb.multipart import PartData, PartEnd, PartStart, StreamParser, parse_media_type
from tessel.errors import InvalidInput, QuotaExceeded
from tessel.ingest import Staged, StoreResult, commit_staged, staging_options
from tessel.ingest.writer import writer_of
from tessel.stores import Stores

log = logging.getLogger("tessel.dicomweb")

MAX_BODY = 1 << 30  # AHI: at most 1 GB per STOW-RS request
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # a larger part is staged from a temporary file
MAX_IN_FLIGHT = 8  # parts received but not yet staged

# Failure Reason (0008,1197) values, PS3.18 Table I.2-2.
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
DOES_NOT_MATCH_SOP_CLASS = 0xA900  # the instance does not conform (missing UIDs, inconsistent pixels, ...)
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
# Failure kinds of ingest (InvalidInput reason) -> Failure Reason; the rest cannot be understood.
_FAILURE_REASONS = {
    "transfer-syntax": TRANSFER_SYNTAX_NOT_SUPPORTED,
    "missing-uid": DOES_NOT_MATCH_SOP_CLASS,
    "uid-conflict": DOES_NOT_MATCH_SOP_CLASS,
    "pixel-attributes": DOES_NOT_MATCH_SOP_CLASS,
    "pixel-length": DOES_NOT_MATCH_SOP_CLASS,
    "dicomdir": SOP_CLASS_NOT_SUPPORTED,
}


@dataclass(slots=True)
class Outcome:
    """What became of one part."""

    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    failure: int | None = None
    message: str | None = None
    warning: int | None = None
    image_set_id: str | None = None
    primary: bool = True


def request_kind(content_type: str) -> tuple[str, str | None]:
    """('multipart', boundary) or ('single', None) for a STOW-RS Content-Type; 415 otherwise."""
    media, params = parse_media_type(content_type)
    if media == "application/dicom":
        return "single", None
    if media != "multipart/related":
        raise UnsupportedMediaType(f"STOW-RS takes multipart/related or application/dicom, not {media or 'nothing'}")
    kind = (params.get("type") or "application/dicom").lower()
    if kind != "application/dicom":
        raise UnsupportedMediaType(f"STOW-RS takes application/dicom parts, not {kind} (no JSON + bulk data)")
    boundary = params.get("boundary")
    if not boundary:
        raise InvalidInput("the multipart/related Content-Type has no boundary")
    return "multipart", boundary


class _Part:
    """One part's bytes: in memory, then in a temporary file once past SPOOL_IN_MEMORY."""

    def __init__(self, media_type: str, spool_dir: Path) -> None:
        self.media_type = media_type
        self._memory = bytearray()
        self._file: Any = None
        self._spool_dir = spool_dir
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        if self._file is None and len(self._memory) + len(data) > SPOOL_IN_MEMORY:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._spool_dir, prefix="stow-", suffix=".dcm")
            self._file = os.fdopen(fd, "wb")
            self.path = Path(name)
            self._file.write(self._memory)
            self._memory = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data

    def source(self) -> bytes | Path:
        if self._file is not None:
            self._file.close()
            assert self.path is not None
            return self.path
        return bytes(self._memory)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _stage_part(stores: Stores, options: Any, part: _Part) -> tuple[Staged, Outcome]:
    """Stage one part (on the staging pool); a failed part is also read for its UIDs."""
    try:
        if part.media_type != "application/dicom":
            return Staged(None), Outcome(failure=CANNOT_UNDERSTAND,
                                         message=f"a {part.media_type} part is not a DICOM instance")
        source = part.source()
        try:
            staged = writer_of(stores).stage(source, options)
        except Exception as exc:  # one part's unexpected failure (disk full, blob store down) is its own
            log.error("STOW-RS: staging a part failed", exc_info=exc)
            return Staged(None), Outcome(*_uids(source), failure=PROCESSING_FAILURE,
                                         message=f"the instance could not be stored: {type(exc).__name__}")
        if staged.record is not None:
            r = staged.record
            return staged, Outcome(r["sop_class_uid"], r["sop_instance_uid"], r["study_instance_uid"],
                                   r["series_instance_uid"])
        outcome = Outcome(*_uids(source))
        outcome.failure = _FAILURE_REASONS.get(staged.failure_kind or "", CANNOT_UNDERSTAND)
        outcome.message = staged.failure
        return staged, outcome
    finally:
        part.discard()


def _uids(source: bytes | Path) -> tuple[str | None, str | None, str | None, str | None]:
    """(SOP class, SOP instance, study, series) UIDs of an instance ingest refused; Nones if unreadable."""
    try:
        ds = dcmread(source if isinstance(source, Path) else io.BytesIO(source), stop_before_pixels=True,
                     specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError, AttributeError,
            NotImplementedError, RecursionError, OverflowError):
        return None, None, None, None

    def get(keyword: str) -> str | None:
        try:
            value = ds.get(keyword)
        except (ValueError, TypeError):
            return None
        return (str(value).strip("\x00 ") or None) if value is not None else None

    return get("SOPClassUID"), get("SOPInstanceUID"), get("StudyInstanceUID"), get("SeriesInstanceUID")


class Upload:
    """One STOW-RS request: parts staged as they arrive, committed together at the end."""

    def __init__(self, stores: Stores, datastore_id: str, study_uid: str | None, pool: cf.Executor) -> None:
        self.stores = stores
        self.datastore_id = datastore_id
        self.study_uid = study_uid
        self.pool = pool
        self.options = staging_options(stores, datastore_id)
        self.spool_dir = stores.settings.data_dir / "tmp"
        self._staging: list[asyncio.Future[tuple[Staged, Outcome]]] = []
        self.size = 0

    async def receive(self, chunks: AsyncIterator[bytes], content_type: str) -> None:
        """Read the whole body, staging each part once it is complete."""
        kind, boundary = request_kind(content_type)
        parser = StreamParser(boundary) if boundary else None
        part: _Part | None = _Part("application/dicom", self.spool_dir) if parser is None else None
        try:
            async for chunk in chunks:
                self.size += len(chunk)
                if self.size > MAX_BODY:
                    raise QuotaExceeded(f"the request body is larger than {MAX_BODY} bytes (1 GB); "
                                        "send the instances in several requests")
                if parser is None:
                    assert part is not None
                    part.write(chunk)
                    continue
                for event in parser.feed(chunk):
                    part = await self._handle(event, part)
            if parser is not None:
                for event in parser.close():
                    part = await self._handle(event, part)
                if parser.parts == 0:
                    raise InvalidInput("the request holds no instances", reason="multipart")
            elif part is not None:
                if self.size == 0:
                    raise InvalidInput("the request body is empty")
                await self._submit(part)
                part = None
        except BaseException:
            if part is not None:
                part.discard()
            await self.abandon()
            raise

    async def _handle(self, event: Any, part: _Part | None) -> _Part | None:
        if isinstance(event, PartStart):
            return _Part(event.content_type("application/dicom"), self.spool_dir)
        assert part is not None
        if isinstance(event, PartData):
            part.write(event.data)
            return part
        assert isinstance(event, PartEnd)
        await self._submit(part)
        return None

    async def _submit(self, part: _Part) -> None:
        waiting = [f for f in self._staging if not f.done()]
        if len(waiting) >= MAX_IN_FLIGHT:  # back-pressure: the client waits, memory does not grow
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        loop = asyncio.get_running_loop()
        self._staging.append(loop.run_in_executor(self.pool, _stage_part, self.stores, self.options, part))

    async def abandon(self) -> None:
        """Let staging that started finish (its blobs stay invisible; the sweeper removes them)."""
        if self._staging:
            await asyncio.gather(*self._staging, return_exceptions=True)

    async def finish(self, base_url: str) -> tuple[int, dict[str, Any]]:
        """Commit what staged and answer with the Store Instances Response."""
        results = await asyncio.gather(*self._staging)
        outcomes = [outcome for _, outcome in results]
        commit: list[tuple[Outcome, Staged]] = []
        for staged, outcome in results:
            if outcome.failure is not None:
                continue
            if self.study_uid is not None and outcome.study_instance_uid != self.study_uid:
                outcome.failure = DOES_NOT_MATCH_SOP_CLASS
                outcome.message = (f"the instance's Study Instance UID {outcome.study_instance_uid} is not the "
                                   f"study {self.study_uid} the request names")
                continue
            commit.append((outcome, staged))
        if commit:
            stored = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(commit_staged, self.stores, self.datastore_id, [s for _, s in commit],
                                        writer=writer_of(self.stores)))
            for (outcome, _), result in zip(commit, stored):
                _record(outcome, result)
        return response(outcomes, base_url)


def _record(outcome: Outcome, result: StoreResult) -> None:
    if result.placement is not None:
        outcome.image_set_id = result.placement.image_set_id
        outcome.primary = result.placement.is_primary
    codes = [int(w["warning_reason_code"]) for w in result.warnings if w.get("warning_reason_code")]
    if codes:
        outcome.warning = codes[0]


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


def response(outcomes: list[Outcome], base_url: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Store Instances Response in DICOM JSON)."""
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
    warned = any(o.warning is not None for o in stored)
    status = 409 if not stored else 202 if failed or warned else 200
    return status, dict(sorted(body.items()))
