"""RAW + JPEG pairs: photos.pair_id and photos.pair_role.

Revision ID: 0005
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0003'  # re-chained after i11s's 0003 (both came from 0002)
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite): existing rows are simply unpaired until the
    # next scan or the daemon records them again.
    op.add_column('photos', sa.Column('pair_id', sa.Integer(), nullable=True))
    op.add_column('photos', sa.Column('pair_role', sa.String(length=9), nullable=True))
    op.create_index(op.f('ix_photos_pair_id'), 'photos', ['pair_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_photos_pair_id'), table_name='photos')
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), never a batch rebuild: rebuilding photos
    # would cascade-delete every scoring run.
    op.drop_column('photos', 'pair_role')
    op.drop_column('photos', 'pair_id')
