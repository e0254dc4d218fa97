"""Photos, scoring runs (packed candidates), queryable top crops and their explanations.

Revision ID: 0001
Revises: None
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('folder', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('stored_width', sa.Integer(), nullable=True),
    sa.Column('stored_height', sa.Integer(), nullable=True),
    sa.Column('orientation', sa.SmallInteger(), nullable=True),
    sa.Column('format', sa.String(length=16), nullable=True),
    sa.Column('taken_at', sa.DateTime(), nullable=True),
    sa.Column('camera_make', sa.String(length=64), nullable=True),
    sa.Column('camera_model', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('offline', sa.Boolean(), nullable=False),
    sa.Column('mtime', sa.Float(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('path', name=op.f('uq_photos_path'))
    )
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_photos_camera_model'), ['camera_model'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_content_hash'), ['content_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_folder'), ['folder'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_taken_at'), ['taken_at'], unique=False)

    op.create_table('scoring_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('scorer', sa.String(length=64), nullable=False),
    sa.Column('weights_hash', sa.String(length=64), nullable=False),
    sa.Column('device', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('n_candidates', sa.Integer(), nullable=False),
    sa.Column('aspects', sa.Text(), nullable=False),
    sa.Column('full_score', sa.Float(), nullable=False),
    sa.Column('best_score', sa.Float(), nullable=True),
    sa.Column('best_improvement', sa.Float(), nullable=True),
    sa.Column('candidates', sa.LargeBinary(), nullable=False),
    sa.Column('elements', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_scoring_runs_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scoring_runs'))
    )
    with op.batch_alter_table('scoring_runs', schema=None) as batch_op:
        batch_op.create_index('ix_scoring_runs_hash_scorer', ['content_hash', 'scorer', 'weights_hash'], unique=False)
        batch_op.create_index('ix_scoring_runs_photo_active', ['photo_id', 'active'], unique=False)

    op.create_table('crops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('best', sa.Boolean(), nullable=False),
    sa.Column('aspect', sa.String(length=16), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.Column('x1', sa.Integer(), nullable=False),
    sa.Column('y1', sa.Integer(), nullable=False),
    sa.Column('x2', sa.Integer(), nullable=False),
    sa.Column('y2', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('improvement', sa.Float(), nullable=False),
    sa.Column('elements', sa.LargeBinary(), nullable=True),
    sa.Column('enhances', sa.SmallInteger(), nullable=False),
    sa.Column('reduces', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_crops_photo_id_photos'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['scoring_runs.id'], name=op.f('fk_crops_run_id_scoring_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crops'))
    )
    with op.batch_alter_table('crops', schema=None) as batch_op:
        batch_op.create_index('ix_crops_aspect', ['aspect', 'rank', 'active', 'improvement', 'enhances', 'reduces'], unique=False)
        batch_op.create_index('ix_crops_best', ['best', 'active', 'improvement', 'enhances', 'reduces'], unique=False)
        batch_op.create_index('ix_crops_photo', ['photo_id', 'active', 'best'], unique=False)
        batch_op.create_index('ix_crops_run', ['run_id'], unique=False)

    op.create_table('explanations',
    sa.Column('crop_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('element', sa.SmallInteger(), nullable=False),
    sa.Column('change', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['crop_id'], ['crops.id'], name=op.f('fk_explanations_crop_id_crops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('crop_id', 'position', name=op.f('pk_explanations'))
    )


def downgrade() -> None:
    op.drop_table("explanations")
    op.drop_table("crops")
    op.drop_table("scoring_runs")
    op.drop_table("photos")
