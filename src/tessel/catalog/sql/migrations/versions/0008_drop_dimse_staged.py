"""DIMSE: drop dimse_staged (received C-STORE instances now wait in the data dir's spool)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_dimse_staged_datastore', table_name='dimse_staged')
    op.drop_table('dimse_staged')


def downgrade() -> None:
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
