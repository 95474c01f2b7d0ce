"""life cycle: frames waiting to be deleted (frame_deletions), frames by id, when image sets were locked,
import job source owner

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('frame_deletions',
    sa.Column('datastore_id', sa.String(length=32), nullable=False),
    sa.Column('frame_id', sa.String(length=32), nullable=False),
    sa.Column('requested_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('datastore_id', 'frame_id')
    )
    op.create_index('ix_frame_deletions_requested', 'frame_deletions', ['requested_at'], unique=False)
    op.create_index('ix_frames_frame_id', 'frames', ['frame_id'], unique=False)
    with op.batch_alter_table('image_sets') as batch:
        batch.add_column(sa.Column('locked_at', sa.Float(), nullable=True))
    op.create_index('ix_image_sets_locked', 'image_sets', ['locked_at'], unique=False)
    with op.batch_alter_table('import_jobs') as batch:
        batch.add_column(sa.Column('input_owner_account_id', sa.String(length=12), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('import_jobs') as batch:
        batch.drop_column('input_owner_account_id')
    op.drop_index('ix_image_sets_locked', table_name='image_sets')
    with op.batch_alter_table('image_sets') as batch:
        batch.drop_column('locked_at')
    op.drop_index('ix_frames_frame_id', table_name='frames')
    op.drop_index('ix_frame_deletions_requested', table_name='frame_deletions')
    op.drop_table('frame_deletions')
