"""scale-out: import-job leases (one runner per job across servers), shared secrets (the token
signing key: every server must verify every token); on PostgreSQL, TEXT and BIGINT columns

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Which process runs a job, until when: a server that dies loses its claim when the lease ends.
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runner', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.Float(), nullable=True))
    op.create_index('ix_import_jobs_status', 'import_jobs', ['status', 'submitted_at'], unique=False)
    op.create_table('secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        _widen_postgresql(bind)


def _widen_postgresql(bind: sa.engine.Connection) -> None:
    """Columns made before tessel.catalog.sql.dialects spelled them TEXT / BIGINT (a no-op on new databases)."""
    rows = bind.execute(sa.text(
        "SELECT table_name, column_name, data_type, collation_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name <> 'alembic_version' "
        "AND (data_type IN ('character varying', 'integer') OR (data_type = 'text' AND collation_name IS NULL))"))
    for table, column, data_type, _collation in rows.all():
        target = 'BIGINT' if data_type == 'integer' else 'TEXT COLLATE "C"'
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {target}')
    for (sequence,) in bind.execute(sa.text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() "
            "AND data_type = 'integer'::regtype")).all():
        op.execute(f'ALTER SEQUENCE "{sequence}" AS BIGINT')


def downgrade() -> None:
    op.drop_table('secrets')
    op.drop_index('ix_import_jobs_status', table_name='import_jobs')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('runner')
