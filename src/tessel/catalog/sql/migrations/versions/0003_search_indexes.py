"""search indexes for SearchImageSets: (datastore, [equality filter,] sort column, id)
and covering (datastore, range column, sort column, id, state) ones

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SORTS = {"updated": "updated_at", "created": "created_at", "study_dt": "study_date_time"}
EQUALS = {"patient": "patient_id", "accession": "accession_number", "study_id": "study_id",
          "study_uid": "study_instance_uid", "series_uid": "series_instance_uid", "primary": "is_primary"}
# 0001's two-column indexes; the new ones start with the same columns.
REPLACED = {"ix_image_sets_patient": ["datastore_id", "patient_id"],
            "ix_image_sets_accession": ["datastore_id", "accession_number"],
            "ix_image_sets_study_id": ["datastore_id", "study_id"],
            "ix_image_sets_study": ["datastore_id", "study_instance_uid"],
            "ix_image_sets_series": ["datastore_id", "series_instance_uid"],
            "ix_image_sets_study_dt": ["datastore_id", "study_date_time"],
            "ix_image_sets_updated": ["datastore_id", "updated_at"],
            "ix_image_sets_created": ["datastore_id", "created_at"]}


def _new() -> dict[str, list[str]]:
    indexes = {}
    for sort_name, sort in SORTS.items():
        indexes[f"ix_image_sets_{sort_name}"] = ["datastore_id", sort, "id"]
        for equal_name, equal in EQUALS.items():
            indexes[f"ix_image_sets_{equal_name}_{sort_name}"] = ["datastore_id", equal, sort, "id"]
        for range_name, range_column in SORTS.items():
            if range_name != sort_name:
                indexes[f"ix_image_sets_{range_name}_by_{sort_name}"] = [
                    "datastore_id", range_column, sort, "id", "state"]
    return indexes


def upgrade() -> None:
    for name in REPLACED:
        op.drop_index(name, table_name="image_sets")
    for name, columns in _new().items():
        op.create_index(name, "image_sets", columns, unique=False)


def downgrade() -> None:
    for name in _new():
        op.drop_index(name, table_name="image_sets")
    for name, columns in REPLACED.items():
        op.create_index(name, "image_sets", columns, unique=False)
