"""Catalog tables (SQLAlchemy Core). Migrations in ./migrations create exactly these.

Timestamps are epoch seconds (float), as the AHI wire format uses them, so
ranges and sorts are plain numeric comparisons on every database.
"""

from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text)

metadata = MetaData()

UID = String(64)
ID = String(32)

datastores = Table(
    "datastores", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("kms_key_arn", String(512)),
    Column("lambda_authorizer_arn", String(2048)),
    Column("lossless_storage_format", String(32), nullable=False),
    Column("client_token", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

image_sets = Table(
    "image_sets", metadata,
    Column("id", ID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("workflow_status", String(40), nullable=False),
    Column("message", Text),
    Column("is_primary", Boolean, nullable=False),
    Column("group_key", String(64), nullable=False),  # hash of study/series + the keys that decide consistency
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float),
    Column("last_accessed_at", Float),
    Column("storage_tier", String(32), nullable=False, default="FREQUENT_ACCESS"),
    # search fields (the SearchImageSets filters and DICOMTags of its summaries)
    Column("patient_id", String(512)),
    Column("patient_name", String(512)),
    Column("patient_birth_date", String(18)),
    Column("patient_sex", String(16)),
    Column("study_instance_uid", UID, nullable=False),
    Column("study_id", String(64)),
    Column("study_description", String(512)),
    Column("accession_number", String(512)),
    Column("study_date", String(18)),
    Column("study_time", String(28)),
    Column("study_date_time", String(32)),  # YYYYMMDDHHMMSS.ffffff for BETWEEN and sorting
    Column("series_instance_uid", UID, nullable=False),
    Column("series_modality", String(16)),
    Column("series_body_part", String(64)),
    Column("series_number", Integer),
    Column("number_of_series", Integer, nullable=False, default=0),
    Column("number_of_instances", Integer, nullable=False, default=0),
)
Index("ix_image_sets_patient", image_sets.c.datastore_id, image_sets.c.patient_id)
Index("ix_image_sets_accession", image_sets.c.datastore_id, image_sets.c.accession_number)
Index("ix_image_sets_study_id", image_sets.c.datastore_id, image_sets.c.study_id)
Index("ix_image_sets_study", image_sets.c.datastore_id, image_sets.c.study_instance_uid)
Index("ix_image_sets_series", image_sets.c.datastore_id, image_sets.c.series_instance_uid)
Index("ix_image_sets_study_dt", image_sets.c.datastore_id, image_sets.c.study_date_time)
Index("ix_image_sets_updated", image_sets.c.datastore_id, image_sets.c.updated_at)
Index("ix_image_sets_created", image_sets.c.datastore_id, image_sets.c.created_at)
Index("ix_image_sets_group", image_sets.c.datastore_id, image_sets.c.group_key)

image_set_versions = Table(
    "image_set_versions", metadata,
    Column("image_set_id", ID, primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("metadata_key", String(256), nullable=False),
    Column("state", String(16), nullable=False),
    Column("workflow_status", String(40), nullable=False),
    Column("message", Text),
    Column("forced", Boolean, nullable=False, default=False),
    Column("is_primary", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float),
)

instances = Table(
    "instances", metadata,
    Column("image_set_id", ID, primary_key=True),
    Column("sop_instance_uid", UID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("study_instance_uid", UID, nullable=False),
    Column("series_instance_uid", UID, nullable=False),
    Column("sop_class_uid", UID),
    Column("instance_number", Integer),
    Column("number_of_frames", Integer, nullable=False, default=0),
    Column("stored_transfer_syntax_uid", UID),
    Column("digest", String(64), nullable=False),
    Column("version_added", Integer, nullable=False),
)
Index("ix_instances_uids", instances.c.datastore_id, instances.c.study_instance_uid,
      instances.c.series_instance_uid, instances.c.sop_instance_uid)
Index("ix_instances_sop", instances.c.datastore_id, instances.c.sop_instance_uid)

frames = Table(
    "frames", metadata,
    Column("image_set_id", ID, primary_key=True),
    Column("frame_id", ID, primary_key=True),
    Column("sop_instance_uid", UID, nullable=False),
    Column("frame_number", Integer, nullable=False),  # 1-based, as in DICOMweb
    Column("transfer_syntax_uid", UID, nullable=False),
    Column("size", Integer, nullable=False),
)
Index("ix_frames_instance", frames.c.image_set_id, frames.c.sop_instance_uid, frames.c.frame_number)

import_jobs = Table(
    "import_jobs", metadata,
    Column("id", ID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_uri", String(1024), nullable=False),
    Column("output_uri", String(1024), nullable=False),
    Column("data_access_role_arn", String(2048), nullable=False),
    Column("client_token", String(64)),
    Column("message", Text),
    Column("submitted_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("import_configuration", Text),
)
Index("ix_import_jobs_ds", import_jobs.c.datastore_id, import_jobs.c.submitted_at)

import_job_files = Table(
    "import_job_files", metadata,
    Column("job_id", ID, primary_key=True),
    Column("path", String(2048), primary_key=True),
    Column("status", String(16), nullable=False),  # pending | staged | failed | committed
    Column("size", Integer, nullable=False, default=0),
    Column("record", LargeBinary),  # gzip JSON of the staged instance (pending assembly)
    Column("message", Text),
    Column("image_set_id", ID),
)
Index("ix_job_files_status", import_job_files.c.job_id, import_job_files.c.status)

tags = Table(
    "tags", metadata,
    Column("resource_arn", String(512), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)
