"""Wire <-> model for the AHI API: output dicts, ARNs, next tokens, search criteria.

Conventions (spec section 0): timestamps are epoch-second floats; versions are
strings everywhere except the integer `version` of SearchImageSets summaries;
ListImageSetVersions spells `ImageSetWorkflowStatus` with a capital I.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Mapping

from tessel.ahi.access import storage_tier
from tessel.ahi.validation import ValidationError
from tessel.catalog.models import Datastore, ImageSet, ImageSetVersion, ImportJob
from tessel.catalog.search import SearchCriteria, SearchFilter
from tessel.config import Settings
from tessel.errors import NotFound
from tessel.ingest.jobs import job_output_uri
from tessel.lifecycle.datastores import datastore_arn as datastore_arn  # re-exported: the wire names ARNs
from tessel.lifecycle.datastores import image_set_arn as image_set_arn

_ARN = re.compile(r"arn:aws:medical-imaging:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                  r"datastore/(?P<ds>[0-9a-z]{32})(/imageset/(?P<is>[0-9a-z]{32}))?")


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Absent members are left out, as AWS does, rather than sent as null."""
    return {k: v for k, v in d.items() if v is not None}


# -- ARNs ---------------------------------------------------------------------------------------

def parse_arn(settings: Settings, arn: str) -> tuple[str, str | None]:
    """(datastore id, image set id or None) of one of this server's ARNs."""
    m = _ARN.fullmatch(arn)
    if not m or (m["region"], m["account"]) != (settings.region, settings.account_id):
        raise NotFound(f"resource {arn} does not exist")
    return m["ds"], m["is"]


# -- GetImageFrame media types ------------------------------------------------------------------

# GetImageFrame's own table (service-2.json, GetImageFrameResponse.contentType); it differs from
# DICOMweb's for HTJ2K RPCL (AHI: image/jph, DICOMweb: image/jphc). Other syntaxes: the codecs' type.
_AHI_MEDIA_TYPES = {
    "1.2.840.10008.1.2.1": "application/octet-stream",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.91": "image/j2c",
    **{f"1.2.840.10008.1.2.4.{n}": "video/mpeg" for n in ("100", "100.1", "101", "101.1")},
    **{f"1.2.840.10008.1.2.4.{n}{s}": "video/mp4" for n in range(102, 107) for s in ("", ".1")},
    "1.2.840.10008.1.2.4.107": "video/H256",
    "1.2.840.10008.1.2.4.108": "video/H256",
    "1.2.840.10008.1.2.4.202": "image/jph",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.112": "image/jxl",
}


def accepts(accept: str, media_type: str) -> bool:
    """Whether an Accept header admits `media_type` (a q=0 entry refuses it)."""
    kind = media_type.split("/")[0].lower()
    for entry in accept.split(","):
        value, *params = (part.strip() for part in entry.split(";"))
        if any(p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        value = value.lower()
        if value in ("*/*", "*", f"{kind}/*", media_type.lower()):
            return True
    return False


def frame_media_type(transfer_syntax_uid: str | None, codecs_media_type: str) -> str:
    if not transfer_syntax_uid:
        return "image/jph"  # no stored syntax means HTJ2K RPCL (model doc)
    return _AHI_MEDIA_TYPES.get(transfer_syntax_uid, codecs_media_type)


# -- next tokens --------------------------------------------------------------------------------

def encode_token(operation: str, cursor: Any) -> str:
    """Opaque, and different on every page because the cursor moves."""
    raw = json.dumps({"op": operation, "c": cursor}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(operation: str, token: str | None) -> Any:
    if token is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("op") != operation or "c" not in data:
            raise ValueError
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("nextToken", "Value at 'nextToken' failed to satisfy constraint: "
                                           "the pagination token is invalid or expired") from None
    return data["c"]


# -- datastores and jobs ------------------------------------------------------------------------

def datastore_summary(settings: Settings, ds: Datastore) -> dict[str, Any]:
    return {"datastoreId": ds.id, "datastoreName": ds.name, "datastoreStatus": ds.status.value,
            "datastoreArn": datastore_arn(settings, ds.id), "createdAt": ds.created_at,
            "updatedAt": ds.updated_at}


def datastore_properties(settings: Settings, ds: Datastore) -> dict[str, Any]:
    return _clean({**datastore_summary(settings, ds), "kmsKeyArn": ds.kms_key_arn,
                   "lambdaAuthorizerArn": ds.lambda_authorizer_arn,
                   "losslessStorageFormat": ds.lossless_storage_format.value})


def job_summary(job: ImportJob) -> dict[str, Any]:
    return _clean({"jobId": job.id, "jobName": job.name, "jobStatus": job.status.value,
                   "datastoreId": job.datastore_id, "dataAccessRoleArn": job.data_access_role_arn,
                   "endedAt": job.ended_at, "submittedAt": job.submitted_at, "message": job.message})


def job_properties(job: ImportJob) -> dict[str, Any]:
    config = json.loads(job.import_configuration) if job.import_configuration else None
    return _clean({**job_summary(job), "inputS3Uri": job.input_uri, "outputS3Uri": job_output_uri(job),
                   "importConfiguration": config})


# -- image sets ---------------------------------------------------------------------------------

def image_set_properties(settings: Settings, image_set: ImageSet, version: ImageSetVersion) -> dict[str, Any]:
    """GetImageSet: the version's own state, with the image set's access facts."""
    latest = version.version_id == image_set.latest_version
    state = image_set.state if latest else version.state
    status = image_set.workflow_status if latest else version.workflow_status
    return _clean({
        "datastoreId": image_set.datastore_id, "imageSetId": image_set.id,
        "versionId": str(version.version_id), "imageSetState": state.value,
        "imageSetWorkflowStatus": status.value,
        "createdAt": image_set.created_at, "updatedAt": version.updated_at,
        "deletedAt": image_set.deleted_at if latest else version.deleted_at,
        "message": (image_set.message if latest else version.message) or None,
        "imageSetArn": image_set_arn(settings, image_set.datastore_id, image_set.id),
        "overrides": {"forced": True} if version.forced else None,
        "isPrimary": version.is_primary, "lastAccessedAt": image_set.last_accessed_at,
        "storageTier": storage_tier(image_set.created_at, image_set.last_accessed_at)})


def version_properties(version: ImageSetVersion) -> dict[str, Any]:
    """One ListImageSetVersions entry (note the capital I of ImageSetWorkflowStatus)."""
    return _clean({
        "imageSetId": version.image_set_id, "versionId": str(version.version_id),
        "imageSetState": version.state.value, "ImageSetWorkflowStatus": version.workflow_status.value,
        "createdAt": version.created_at, "updatedAt": version.updated_at, "deletedAt": version.deleted_at,
        "message": version.message or None, "overrides": {"forced": True} if version.forced else None,
        "isPrimary": version.is_primary})


def copy_properties(settings: Settings, image_set: ImageSet) -> dict[str, Any]:
    return {"imageSetId": image_set.id, "latestVersionId": str(image_set.latest_version),
            "imageSetState": image_set.state.value, "imageSetWorkflowStatus": image_set.workflow_status.value,
            "createdAt": image_set.created_at, "updatedAt": image_set.updated_at,
            "imageSetArn": image_set_arn(settings, image_set.datastore_id, image_set.id)}


def update_result(image_set: ImageSet) -> dict[str, Any]:
    return _clean({"datastoreId": image_set.datastore_id, "imageSetId": image_set.id,
                   "latestVersionId": str(image_set.latest_version), "imageSetState": image_set.state.value,
                   "imageSetWorkflowStatus": image_set.workflow_status.value,
                   "createdAt": image_set.created_at, "updatedAt": image_set.updated_at,
                   "message": image_set.message or None})


def delete_result(image_set: ImageSet) -> dict[str, Any]:
    return {"datastoreId": image_set.datastore_id, "imageSetId": image_set.id,
            "imageSetState": image_set.state.value, "imageSetWorkflowStatus": image_set.workflow_status.value}


def search_summary(image_set: ImageSet) -> dict[str, Any]:
    tags = _clean({
        "DICOMPatientId": image_set.patient_id, "DICOMPatientName": image_set.patient_name,
        "DICOMPatientBirthDate": image_set.patient_birth_date, "DICOMPatientSex": image_set.patient_sex,
        "DICOMStudyInstanceUID": image_set.study_instance_uid, "DICOMStudyId": image_set.study_id,
        "DICOMStudyDescription": image_set.study_description,
        "DICOMNumberOfStudyRelatedSeries": image_set.number_of_series,
        "DICOMNumberOfStudyRelatedInstances": image_set.number_of_instances,
        "DICOMAccessionNumber": image_set.accession_number,
        "DICOMSeriesInstanceUID": image_set.series_instance_uid,
        "DICOMSeriesModality": image_set.series_modality, "DICOMSeriesBodyPart": image_set.series_body_part,
        "DICOMSeriesNumber": image_set.series_number, "DICOMStudyDate": image_set.study_date,
        "DICOMStudyTime": image_set.study_time})
    return _clean({"imageSetId": image_set.id, "version": image_set.latest_version,
                   "createdAt": image_set.created_at, "updatedAt": image_set.updated_at,
                   "lastAccessedAt": image_set.last_accessed_at,
                   "storageTier": storage_tier(image_set.created_at, image_set.last_accessed_at),
                   "DICOMTags": tags, "isPrimary": image_set.is_primary})


# -- request documents --------------------------------------------------------------------------

def json_document(data: bytes | str, field: str) -> dict[str, Any]:
    """An update/copy document (JSON object) sent as a blob or a string member."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise ValidationError(field, f"Value at '{field}' failed to satisfy constraint: "
                                     f"Member must be a JSON document") from None
    if not isinstance(doc, dict):
        raise ValidationError(field, f"Value at '{field}' failed to satisfy constraint: "
                                     f"Member must be a JSON object")
    return doc


_RANGE_FIELDS = frozenset({"createdAt", "updatedAt", "DICOMStudyDateAndTime"})
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")


def _date_and_time(value: Mapping[str, Any], where: str) -> tuple[str, str | None]:
    date, time = value["DICOMStudyDate"], value.get("DICOMStudyTime") or None
    if not _DATE.fullmatch(date):
        raise ValidationError(f"{where}.DICOMStudyDate", f"Value '{date}' at '{where}.DICOMStudyDate' failed "
                              f"to satisfy constraint: Member must be a date in YYYYMMDD form")
    if time is not None and not _TIME.fullmatch(time):
        raise ValidationError(f"{where}.DICOMStudyTime", f"Value '{time}' at '{where}.DICOMStudyTime' failed "
                              f"to satisfy constraint: Member must be a time in HHMMSS[.FFFFFF] form")
    return date, time


def search_criteria(criteria: Mapping[str, Any] | None) -> SearchCriteria:
    """The model-checked searchCriteria payload, checked for operator/value combinations."""
    criteria = criteria or {}
    filters = []
    for i, f in enumerate(criteria.get("filters", []), start=1):
        where = f"searchCriteria.filters.{i}.member"
        operator, values = f["operator"], f["values"]
        fields = {next(iter(v)) for v in values}
        if len(fields) != 1:
            raise ValidationError(f"{where}.values", f"Value at '{where}.values' failed to satisfy "
                                  f"constraint: all values of a filter must name the same attribute")
        (field,) = fields
        if operator == "BETWEEN":
            if field not in _RANGE_FIELDS:
                raise ValidationError(f"{where}.operator", f"Value 'BETWEEN' at '{where}.operator' failed to "
                                      f"satisfy constraint: BETWEEN applies to createdAt, updatedAt and "
                                      f"DICOMStudyDateAndTime only, not {field}")
            if len(values) != 2:
                raise ValidationError(f"{where}.values", f"Value at '{where}.values' failed to satisfy "
                                      f"constraint: BETWEEN needs exactly two values (lowerBound, upperBound)")
        elif field in _RANGE_FIELDS:
            raise ValidationError(f"{where}.operator", f"Value 'EQUAL' at '{where}.operator' failed to "
                                  f"satisfy constraint: {field} is searched with BETWEEN")
        elif len(values) != 1:
            raise ValidationError(f"{where}.values", f"Value at '{where}.values' failed to satisfy "
                                  f"constraint: EQUAL needs exactly one value")
        converted: list[Any] = []
        for j, v in enumerate(values, start=1):
            raw = v[field]
            converted.append(_date_and_time(raw, f"{where}.values.{j}.member.{field}")
                             if field == "DICOMStudyDateAndTime" else raw)
        if operator == "BETWEEN" and _ordering(converted[0]) > _ordering(converted[1]):
            raise ValidationError(f"{where}.values", f"Value at '{where}.values' failed to satisfy "
                                  f"constraint: the lower bound is after the upper bound")
        filters.append(SearchFilter(operator=operator, field=field, values=tuple(converted)))
    sort = criteria.get("sort")
    if sort is None:
        return SearchCriteria(filters=tuple(filters))
    return SearchCriteria(filters=tuple(filters), sort_field=sort["sortField"], sort_order=sort["sortOrder"])


def _ordering(value: Any) -> Any:
    if isinstance(value, tuple):  # (date, time|None): a missing time is 00:00:00
        main, _, fraction = (value[1] or "").partition(".")
        return value[0], main.ljust(6, "0"), fraction.ljust(6, "0")
    return value
