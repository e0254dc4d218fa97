"""photos.size as a 64-bit integer: a file over 2 GiB (a large TIFF or a RAW burst) fits.

Revision ID: 0006
Revises: 0005

SQLite's INTEGER is already 64-bit, so only PostgreSQL's column changes (an in-place ALTER
TYPE; no table rebuild on SQLite, which would cascade-delete every scoring run).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('photos', 'size', type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('photos', 'size', type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=True)
