"""initial catalog

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datastores',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('kms_key_arn', sa.String(length=512), nullable=True),
    sa.Column('lambda_authorizer_arn', sa.String(length=2048), nullable=True),
    sa.Column('lossless_storage_format', sa.String(length=32), nullable=False),
    sa.Column('client_token', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('frames',
    sa.Column('image_set_id', sa.String(length=32), nullable=False),
    sa.Column('frame_id', sa.String(length=32), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('frame_number', sa.Integer(), nullable=False),
    sa.Column('transfer_syntax_uid', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('image_set_id', 'frame_id')
    )
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.create_index('ix_frames_instance', ['image_set_id', 'sop_instance_uid', 'frame_number'], unique=False)

    op.create_table('image_set_versions',
    sa.Column('image_set_id', sa.String(length=32), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('metadata_key', sa.String(length=256), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('workflow_status', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('image_set_id', 'version_id')
    )
    op.create_table('image_sets',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('workflow_status', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('group_key', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.Column('last_accessed_at', sa.Float(), nullable=True),
    sa.Column('storage_tier', sa.String(length=32), nullable=False),
    sa.Column('patient_id', sa.String(length=512), nullable=True),
    sa.Column('patient_name', sa.String(length=512), nullable=True),
    sa.Column('patient_birth_date', sa.String(length=18), nullable=True),
    sa.Column('patient_sex', sa.String(length=16), nullable=True),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('study_id', sa.String(length=64), nullable=True),
    sa.Column('study_description', sa.String(length=512), nullable=True),
    sa.Column('accession_number', sa.String(length=512), nullable=True),
    sa.Column('study_date', sa.String(length=18), nullable=True),
    sa.Column('study_time', sa.String(length=28), nullable=True),
    sa.Column('study_date_time', sa.String(length=32), nullable=True),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('series_modality', sa.String(length=16), nullable=True),
    sa.Column('series_body_part', sa.String(length=64), nullable=True),
    sa.Column('series_number', sa.Integer(), nullable=True),
    sa.Column('number_of_series', sa.Integer(), nullable=False),
    sa.Column('number_of_instances', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('image_sets', schema=None) as batch_op:
        batch_op.create_index('ix_image_sets_accession', ['datastore_id', 'accession_number'], unique=False)
        batch_op.create_index('ix_image_sets_created', ['datastore_id', 'created_at'], unique=False)
        batch_op.create_index('ix_image_sets_group', ['datastore_id', 'group_key'], unique=False)
        batch_op.create_index('ix_image_sets_patient', ['datastore_id', 'patient_id'], unique=False)
        batch_op.create_index('ix_image_sets_series', ['datastore_id', 'series_instance_uid'], unique=False)
        batch_op.create_index('ix_image_sets_study', ['datastore_id', 'study_instance_uid'], unique=False)
        batch_op.create_index('ix_image_sets_study_dt', ['datastore_id', 'study_date_time'], unique=False)
        batch_op.create_index('ix_image_sets_study_id', ['datastore_id', 'study_id'], unique=False)
        batch_op.create_index('ix_image_sets_updated', ['datastore_id', 'updated_at'], unique=False)

    op.create_table('import_job_files',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=2048), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('image_set_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('job_id', 'path')
    )
    with op.batch_alter_table('import_job_files', schema=None) as batch_op:
        batch_op.create_index('ix_job_files_status', ['job_id', 'status'], unique=False)

    op.create_table('import_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('input_uri', sa.String(length=1024), nullable=False),
    sa.Column('output_uri', sa.String(length=1024), nullable=False),
    sa.Column('data_access_role_arn', sa.String(length=2048), nullable=False),
    sa.Column('client_token', sa.String(length=64), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('submitted_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('import_configuration', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_import_jobs_ds', ['datastore_id', 'submitted_at'], unique=False)

    op.create_table('instances',
    sa.Column('image_set_id', sa.String(length=32), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('sop_class_uid', sa.String(length=64), nullable=True),
    sa.Column('instance_number', sa.Integer(), nullable=True),
    sa.Column('number_of_frames', sa.Integer(), nullable=False),
    sa.Column('stored_transfer_syntax_uid', sa.String(length=64), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('version_added', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('image_set_id', 'sop_instance_uid')
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index('ix_instances_sop', ['datastore_id', 'sop_instance_uid'], unique=False)
        batch_op.create_index('ix_instances_uids', ['datastore_id', 'study_instance_uid', 'series_instance_uid', 'sop_instance_uid'], unique=False)

    op.create_table('tags',
    sa.Column('resource_arn', sa.String(length=512), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('resource_arn', 'key')
    )


def downgrade() -> None:
    op.drop_table('tags')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_uids')
        batch_op.drop_index('ix_instances_sop')

    op.drop_table('instances')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_import_jobs_ds')

    op.drop_table('import_jobs')
    with op.batch_alter_table('import_job_files', schema=None) as batch_op:
        batch_op.drop_index('ix_job_files_status')

    op.drop_table('import_job_files')
    with op.batch_alter_table('image_sets', schema=None) as batch_op:
        batch_op.drop_index('ix_image_sets_updated')
        batch_op.drop_index('ix_image_sets_study_id')
        batch_op.drop_index('ix_image_sets_study_dt')
        batch_op.drop_index('ix_image_sets_study')
        batch_op.drop_index('ix_image_sets_series')
        batch_op.drop_index('ix_image_sets_patient')
        batch_op.drop_index('ix_image_sets_group')
        batch_op.drop_index('ix_image_sets_created')
        batch_op.drop_index('ix_image_sets_accession')

    op.drop_table('image_sets')
    op.drop_table('image_set_versions')
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_index('ix_frames_instance')

    op.drop_table('frames')
    op.drop_table('datastores')
