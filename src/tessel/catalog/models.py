"""Catalog values: what the rows mean, independent of the database."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

DatastoreId = NewType("DatastoreId", str)
ImageSetId = NewType("ImageSetId", str)
ImageFrameId = NewType("ImageFrameId", str)
JobId = NewType("JobId", str)


class DatastoreStatus(StrEnum):
    CREATING = "CREATING"
    CREATE_FAILED = "CREATE_FAILED"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ImageSetState(StrEnum):
    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    DELETED = "DELETED"


class ImageSetWorkflowStatus(StrEnum):
    CREATED = "CREATED"
    COPIED = "COPIED"
    COPYING = "COPYING"
    COPYING_WITH_READ_ONLY_ACCESS = "COPYING_WITH_READ_ONLY_ACCESS"
    COPY_FAILED = "COPY_FAILED"
    UPDATING = "UPDATING"
    UPDATING_FOR_STUDY_CONSISTENCY = "UPDATING_FOR_STUDY_CONSISTENCY"
    UPDATED = "UPDATED"
    UPDATE_FAILED = "UPDATE_FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    IMPORTING = "IMPORTING"
    IMPORTED = "IMPORTED"
    IMPORT_FAILED = "IMPORT_FAILED"


class JobStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class LosslessStorageFormat(StrEnum):
    HTJ2K = "HTJ2K"
    JPEG_2000_LOSSLESS = "JPEG_2000_LOSSLESS"


@dataclass(frozen=True, slots=True)
class Datastore:
    id: DatastoreId
    name: str
    status: DatastoreStatus
    lossless_storage_format: LosslessStorageFormat
    kms_key_arn: str | None
    lambda_authorizer_arn: str | None
    client_token: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ImageSet:
    id: ImageSetId
    datastore_id: DatastoreId
    latest_version: int
    state: ImageSetState
    workflow_status: ImageSetWorkflowStatus
    message: str | None
    is_primary: bool
    group_key: str
    created_at: float
    updated_at: float
    deleted_at: float | None
    last_accessed_at: float | None
    storage_tier: str
    patient_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str
    study_id: str | None
    study_description: str | None
    accession_number: str | None
    study_date: str | None
    study_time: str | None
    study_date_time: str | None
    series_instance_uid: str
    series_modality: str | None
    series_body_part: str | None
    series_number: int | None
    number_of_series: int
    number_of_instances: int
    locked_at: float | None = None  # set while a write holds the image set LOCKED


@dataclass(frozen=True, slots=True)
class ImageSetVersion:
    image_set_id: ImageSetId
    version_id: int
    metadata_key: str
    state: ImageSetState
    workflow_status: ImageSetWorkflowStatus
    message: str | None
    forced: bool
    is_primary: bool
    created_at: float
    updated_at: float
    deleted_at: float | None


@dataclass(frozen=True, slots=True)
class FrameLocation:
    """All GetImageFrame needs: one lookup gives the blob and its media."""

    image_set_id: ImageSetId
    frame_id: ImageFrameId
    sop_instance_uid: str
    frame_number: int
    transfer_syntax_uid: str
    size: int


@dataclass(frozen=True, slots=True)
class ImportJob:
    id: JobId
    datastore_id: DatastoreId
    name: str
    status: JobStatus
    input_uri: str
    output_uri: str
    data_access_role_arn: str
    client_token: str | None
    message: str | None
    submitted_at: float
    ended_at: float | None
    import_configuration: str | None
    input_owner_account_id: str | None = None  # the account that must own an s3:// input bucket
