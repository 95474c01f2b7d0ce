"""DIMSE: the AE registry (dicom_peers) and the C-STORE write-ahead queue (dimse_staged)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dicom_peers',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('dimse_staged',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('calling_ae_title', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_dimse_staged_datastore', 'dimse_staged', ['datastore_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_dimse_staged_datastore', table_name='dimse_staged')
    op.drop_table('dimse_staged')
    op.drop_table('dicom_peers')
