"""Subjects (faces, people, the salient region) stored with each scoring run.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: runs recorded before subjects existed read back as "none
    # known", and adding the column rewrites no row (cheap on a 100k-photo library).
    with op.batch_alter_table('scoring_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subjects', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scoring_runs', schema=None) as batch_op:
        batch_op.drop_column('subjects')
