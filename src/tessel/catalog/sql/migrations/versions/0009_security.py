"""security: data keys (encryption at rest) and the hash-chained audit trail

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('data_keys',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('master_key', sa.String(length=128), nullable=False),
    sa.Column('master_version', sa.String(length=16), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('rewrapped_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('audit_records',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('principal_name', sa.String(length=256), nullable=True),
    sa.Column('auth', sa.String(length=16), nullable=True),
    sa.Column('source', sa.String(length=128), nullable=True),
    sa.Column('interface', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('datastore_id', sa.String(length=32), nullable=True),
    sa.Column('image_set_id', sa.String(length=32), nullable=True),
    sa.Column('study_uid', sa.String(length=64), nullable=True),
    sa.Column('series_uid', sa.String(length=64), nullable=True),
    sa.Column('sop_uid', sa.String(length=64), nullable=True),
    sa.Column('patient_id', sa.String(length=512), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('bytes_in', sa.BigInteger(), nullable=False),
    sa.Column('bytes_out', sa.BigInteger(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index('ix_audit_time', 'audit_records', ['time'], unique=False)
    op.create_index('ix_audit_principal', 'audit_records', ['principal', 'time'], unique=False)
    op.create_index('ix_audit_image_set', 'audit_records', ['image_set_id'], unique=False)
    op.create_index('ix_audit_patient', 'audit_records', ['patient_id'], unique=False)
    op.create_index('ix_audit_outcome', 'audit_records', ['outcome', 'time'], unique=False)
    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The chain's one head row: before record 1 the chain "ends" at the genesis hash.
    op.bulk_insert(head, [{'id': 1, 'seq': 0, 'hash': '0' * 64}])


def downgrade() -> None:
    op.drop_table('audit_head')
    op.drop_index('ix_audit_outcome', table_name='audit_records')
    op.drop_index('ix_audit_patient', table_name='audit_records')
    op.drop_index('ix_audit_image_set', table_name='audit_records')
    op.drop_index('ix_audit_principal', table_name='audit_records')
    op.drop_index('ix_audit_time', table_name='audit_records')
    op.drop_table('audit_records')
    op.drop_table('data_keys')
