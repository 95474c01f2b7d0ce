"""Catalog tables (SQLAlchemy Core). Migrations in ./migrations create exactly these.

Timestamps are epoch seconds (float), as the AHI wire format uses them, so
ranges and sorts are plain numeric comparisons on every database.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String,
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
    Column("locked_at", Float),  # when a write LOCKED it (lifecycle/imagesets.py); NULL when not locked
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
Index("ix_image_sets_group", image_sets.c.datastore_id, image_sets.c.group_key)
Index("ix_image_sets_locked", image_sets.c.locked_at)  # finding locks left by a stopped process
# SearchImageSets (catalog/search.py). Every equality filter gets an index per sort column, so a
# page is one ordered range scan however many image sets share the value (a de-identified
# PatientID, StudyID "1"). A range filter on one timestamp sorted by another cannot be one
# scan; its covering index lets search sort just (sort value, id) pairs of the matches.
SEARCH_SORTS = {"updated": image_sets.c.updated_at, "created": image_sets.c.created_at,
                "study_dt": image_sets.c.study_date_time}
SEARCH_EQUALS = {"patient": image_sets.c.patient_id, "accession": image_sets.c.accession_number,
                 "study_id": image_sets.c.study_id, "study_uid": image_sets.c.study_instance_uid,
                 "series_uid": image_sets.c.series_instance_uid, "primary": image_sets.c.is_primary}
for _sort_name, _sort in SEARCH_SORTS.items():
    Index(f"ix_image_sets_{_sort_name}", image_sets.c.datastore_id, _sort, image_sets.c.id)
    for _equal_name, _equal in SEARCH_EQUALS.items():
        Index(f"ix_image_sets_{_equal_name}_{_sort_name}", image_sets.c.datastore_id, _equal, _sort,
              image_sets.c.id)
    for _range_name, _range in SEARCH_SORTS.items():
        if _range_name != _sort_name:
            Index(f"ix_image_sets_{_range_name}_by_{_sort_name}", image_sets.c.datastore_id, _range, _sort,
                  image_sets.c.id, image_sets.c.state)

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
Index("ix_frames_frame_id", frames.c.frame_id)  # which image sets hold a frame (copies share frames)

# Frames of deleted image sets, deleted from the blob store once no image set holds them
# (lifecycle/deletion.py, migration 0006).
frame_deletions = Table(
    "frame_deletions", metadata,
    Column("datastore_id", ID, primary_key=True),
    Column("frame_id", ID, primary_key=True),
    Column("requested_at", Float, nullable=False),
)
Index("ix_frame_deletions_requested", frame_deletions.c.requested_at)

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
    Column("input_owner_account_id", String(12)),  # expected owner of an s3:// input bucket
    # The process running the job and the end of its lease (migration 0007): servers sharing a
    # catalog never run one job twice, and a dead runner's job is taken over when its lease ends.
    Column("runner", String(256)),
    Column("lease_expires_at", Float),
)
Index("ix_import_jobs_ds", import_jobs.c.datastore_id, import_jobs.c.submitted_at)
Index("ix_import_jobs_status", import_jobs.c.status, import_jobs.c.submitted_at)

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

# Secrets every server of a deployment shares (migration 0007): the Bearer token signing key.
secrets = Table(
    "secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

access_keys = Table(
    "access_keys", metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("secret", String(256), nullable=False),  # SigV4 verification needs the secret itself
    Column("status", String(16), nullable=False),  # Active | Disabled
    Column("policy", Text),  # IAM-style policy JSON; NULL = administrator
    Column("created_at", Float, nullable=False),
)

# -- DICOM hierarchical query index (catalog/query.py, migration 0004) -----------------------------
# Primary image sets only, rewritten by query.reindex_image_set in the transaction that commits a
# version. Match columns hold normalised values (lower-cased names, padded times); `attrs` holds the
# level's attributes as the image set document has them, for the return keys.

dicom_studies = Table(
    "dicom_studies", metadata,
    Column("datastore_id", ID, primary_key=True),
    Column("study_instance_uid", UID, primary_key=True),
    Column("patient_id", Text),
    Column("patient_name", Text),        # lower-cased, for case-insensitive matching
    Column("patient_name_words", Text),  # " word word ", for fuzzy matching
    Column("patient_birth_date", String(18)),
    Column("patient_sex", String(16)),
    Column("study_date", String(18)),
    Column("study_time", String(32)),    # HHMMSS.ffffff
    Column("accession_number", Text),
    Column("study_id", Text),
    Column("study_description", Text),
    Column("referring_physician_name", Text),
    Column("referring_physician_name_words", Text),
    Column("modalities_in_study", Text),     # "\CT\SR\"
    Column("sop_classes_in_study", Text),    # "\1.2...\1.2...\"
    Column("number_of_series", Integer, nullable=False),
    Column("number_of_instances", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("attrs", Text, nullable=False),   # JSON: patient + study attributes
)
# Equality indexes end with updated_at: QIDO-RS answers newest first, so a match is then one
# ordered range (migration 0006).
Index("ix_dicom_studies_updated", dicom_studies.c.datastore_id, dicom_studies.c.updated_at,
      dicom_studies.c.study_instance_uid, dicom_studies.c.patient_name, dicom_studies.c.patient_name_words,
      dicom_studies.c.modalities_in_study)  # what wildcard and fuzzy searches scan: the index alone
Index("ix_dicom_studies_patient_id", dicom_studies.c.datastore_id, dicom_studies.c.patient_id,
      dicom_studies.c.updated_at, dicom_studies.c.study_instance_uid)
Index("ix_dicom_studies_patient_name", dicom_studies.c.datastore_id, dicom_studies.c.patient_name,
      dicom_studies.c.updated_at, dicom_studies.c.study_instance_uid)
Index("ix_dicom_studies_date", dicom_studies.c.datastore_id, dicom_studies.c.study_date)
Index("ix_dicom_studies_accession", dicom_studies.c.datastore_id, dicom_studies.c.accession_number,
      dicom_studies.c.updated_at, dicom_studies.c.study_instance_uid)
Index("ix_dicom_studies_study_id", dicom_studies.c.datastore_id, dicom_studies.c.study_id,
      dicom_studies.c.updated_at, dicom_studies.c.study_instance_uid)

dicom_series = Table(
    "dicom_series", metadata,
    Column("image_set_id", ID, primary_key=True),
    Column("series_instance_uid", UID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("study_instance_uid", UID, nullable=False),
    Column("version", Integer, nullable=False),  # the image set version these rows show
    Column("modality", String(16)),
    Column("series_number", Integer),
    Column("series_description", Text),
    Column("series_date", String(18)),
    Column("series_time", String(32)),
    Column("body_part_examined", Text),
    Column("number_of_instances", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("attrs", Text, nullable=False),        # JSON: series attributes
    Column("study_attrs", Text, nullable=False),  # JSON: patient + study attributes of this image set
)
Index("ix_dicom_series_study", dicom_series.c.datastore_id, dicom_series.c.study_instance_uid,
      dicom_series.c.series_number)
Index("ix_dicom_series_uid", dicom_series.c.datastore_id, dicom_series.c.series_instance_uid,
      dicom_series.c.image_set_id)
Index("ix_dicom_series_modality", dicom_series.c.datastore_id, dicom_series.c.modality)

dicom_instances = Table(
    "dicom_instances", metadata,
    Column("image_set_id", ID, primary_key=True),
    Column("sop_instance_uid", UID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("study_instance_uid", UID, nullable=False),
    Column("series_instance_uid", UID, nullable=False),
    Column("sop_class_uid", UID),
    Column("instance_number", Integer),
    Column("number_of_frames", Integer, nullable=False),
    Column("stored_transfer_syntax_uid", UID),
    Column("pixel", Text),                   # JSON PixelInfo fields, so frames decode without the document
    Column("digest", String(32), nullable=False),
    Column("attrs", Text, nullable=False),   # JSON: instance attributes (Pixel Data left out)
    Column("vrs", Text),                     # JSON DICOMVRs, when the instance has private/unknown tags
)
Index("ix_dicom_instances_sop", dicom_instances.c.datastore_id, dicom_instances.c.sop_instance_uid)
Index("ix_dicom_instances_series", dicom_instances.c.datastore_id, dicom_instances.c.study_instance_uid,
      dicom_instances.c.series_instance_uid, dicom_instances.c.instance_number)

# -- DIMSE (dimse/peers.py; migration 0005) -----------------------------------------------------------

dicom_peers = Table(
    "dicom_peers", metadata,
    Column("name", String(16), primary_key=True),  # the peer's AE title
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# -- security (crypto/datakeys.py, audit/; migration 0009) ------------------------------------------

# Data keys: random 256-bit keys, each wrapped (AES-256-GCM) by a version of a master key from the
# keyring file. `datastore/<id>` encrypts that datastore's blobs; `access-keys` the stored secrets;
# `audit-chain` keys the audit trail's hash chain. algorithm "none": a datastore created with
# encryption at rest turned off (its blobs are stored as they are).
data_keys = Table(
    "data_keys", metadata,
    Column("name", String(128), primary_key=True),
    Column("algorithm", String(16), nullable=False),   # AES-256-GCM | none
    Column("master_key", String(128), nullable=False),  # master key name (kmsKeyArn's key/NAME)
    Column("master_version", String(16), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),     # nonce + AES-GCM(master, data key)
    Column("created_at", Float, nullable=False),
    Column("rewrapped_at", Float),
)

# The audit trail: one row per request on every interface, append-only, hash-chained: `hash` is
# HMAC-SHA256 (key: the `audit-chain` data key) over the previous record's hash and this record.
audit_records = Table(
    "audit_records", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", Float, nullable=False),
    Column("principal", String(256), nullable=False),   # access key id, oidc:<sub>, ae:<title>, anonymous
    Column("principal_name", String(256)),
    Column("auth", String(16)),                         # sigv4 | basic | bearer | oidc | dimse | none
    Column("source", String(128)),                      # the peer's address
    Column("interface", String(16), nullable=False),    # ahi | dicomweb | dimse | viewer
    Column("action", String(64), nullable=False),       # medical-imaging:GetImageFrame, ...
    Column("datastore_id", String(32)),
    Column("image_set_id", String(32)),
    Column("study_uid", String(64)),
    Column("series_uid", String(64)),
    Column("sop_uid", String(64)),
    Column("patient_id", String(512)),
    Column("outcome", String(16), nullable=False),      # allowed | denied | invalid | error
    Column("status", Integer),                          # HTTP status or DIMSE status
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("bytes_out", BigInteger, nullable=False, default=0),
    Column("duration_ms", Float),
    Column("detail", Text),                             # why denied / failed; never PHI values
    Column("request_id", String(64)),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_time", audit_records.c.time)
Index("ix_audit_principal", audit_records.c.principal, audit_records.c.time)
Index("ix_audit_image_set", audit_records.c.image_set_id)
Index("ix_audit_patient", audit_records.c.patient_id)
Index("ix_audit_outcome", audit_records.c.outcome, audit_records.c.time)

# The chain's head (one row): writers lock it, so concurrent servers on one catalog extend one
# chain; a record removed from the end shows as a head that names a missing record.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# -- viewer (viewer/bookmarks.py; migration 0010) ------------------------------------------------

# Pathology bookmarks: a named region on one pyramid level of a slide, kept with the study.
# x, y, width, height are in that level's total pixel matrix (level 0 = full resolution).
slide_bookmarks = Table(
    "slide_bookmarks", metadata,
    Column("id", ID, primary_key=True),
    Column("datastore_id", ID, nullable=False),
    Column("study_instance_uid", UID, nullable=False),
    Column("series_instance_uid", UID, nullable=False),
    Column("sop_instance_uid", UID, nullable=False),  # the level's instance
    Column("level", Integer, nullable=False),
    Column("x", Integer, nullable=False),
    Column("y", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("name", String(256), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_by", String(128), nullable=False),  # access key id
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_slide_bookmarks_study", slide_bookmarks.c.datastore_id, slide_bookmarks.c.study_instance_uid,
      slide_bookmarks.c.created_at)
