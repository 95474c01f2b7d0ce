"""DICOM query index: dicom_studies, dicom_series, dicom_instances (QIDO-RS and C-FIND)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dicom_studies',
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.Text(), nullable=True),
    sa.Column('patient_name', sa.Text(), nullable=True),
    sa.Column('patient_name_words', sa.Text(), nullable=True),
    sa.Column('patient_birth_date', sa.String(length=18), nullable=True),
    sa.Column('patient_sex', sa.String(length=16), nullable=True),
    sa.Column('study_date', sa.String(length=18), nullable=True),
    sa.Column('study_time', sa.String(length=32), nullable=True),
    sa.Column('accession_number', sa.Text(), nullable=True),
    sa.Column('study_id', sa.Text(), nullable=True),
    sa.Column('study_description', sa.Text(), nullable=True),
    sa.Column('referring_physician_name', sa.Text(), nullable=True),
    sa.Column('referring_physician_name_words', sa.Text(), nullable=True),
    sa.Column('modalities_in_study', sa.Text(), nullable=True),
    sa.Column('sop_classes_in_study', sa.Text(), nullable=True),
    sa.Column('number_of_series', sa.Integer(), nullable=False),
    sa.Column('number_of_instances', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('attrs', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('datastore_id', 'study_instance_uid')
    )
    op.create_index('ix_dicom_studies_updated', 'dicom_studies', ['datastore_id', 'updated_at'])
    op.create_index('ix_dicom_studies_patient_id', 'dicom_studies', ['datastore_id', 'patient_id'])
    op.create_index('ix_dicom_studies_patient_name', 'dicom_studies', ['datastore_id', 'patient_name'])
    op.create_index('ix_dicom_studies_date', 'dicom_studies', ['datastore_id', 'study_date'])
    op.create_index('ix_dicom_studies_accession', 'dicom_studies', ['datastore_id', 'accession_number'])

    op.create_table('dicom_series',
    sa.Column('image_set_id', sa.String(length=32), nullable=False),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=True),
    sa.Column('series_number', sa.Integer(), nullable=True),
    sa.Column('series_description', sa.Text(), nullable=True),
    sa.Column('series_date', sa.String(length=18), nullable=True),
    sa.Column('series_time', sa.String(length=32), nullable=True),
    sa.Column('body_part_examined', sa.Text(), nullable=True),
    sa.Column('number_of_instances', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('attrs', sa.Text(), nullable=False),
    sa.Column('study_attrs', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('image_set_id', 'series_instance_uid')
    )
    op.create_index('ix_dicom_series_study', 'dicom_series', ['datastore_id', 'study_instance_uid', 'series_number'])
    op.create_index('ix_dicom_series_uid', 'dicom_series', ['datastore_id', 'series_instance_uid'])
    op.create_index('ix_dicom_series_modality', 'dicom_series', ['datastore_id', 'modality'])

    op.create_table('dicom_instances',
    sa.Column('image_set_id', sa.String(length=32), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('sop_class_uid', sa.String(length=64), nullable=True),
    sa.Column('instance_number', sa.Integer(), nullable=True),
    sa.Column('number_of_frames', sa.Integer(), nullable=False),
    sa.Column('stored_transfer_syntax_uid', sa.String(length=64), nullable=True),
    sa.Column('pixel', sa.Text(), nullable=True),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('attrs', sa.Text(), nullable=False),
    sa.Column('vrs', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('image_set_id', 'sop_instance_uid')
    )
    op.create_index('ix_dicom_instances_sop', 'dicom_instances', ['datastore_id', 'sop_instance_uid'])
    op.create_index('ix_dicom_instances_series', 'dicom_instances',
                    ['datastore_id', 'study_instance_uid', 'series_instance_uid', 'instance_number'])
    # Image sets committed before this revision are indexed at start-up (tessel.catalog.query.backfill):
    # that needs their documents, which live in the blob store.


def downgrade() -> None:
    op.drop_table('dicom_instances')
    op.drop_table('dicom_series')
    op.drop_table('dicom_studies')
