"""metadata_holds: photos whose crop metadata is owed (scores committed, XMP maybe not written).

Revision ID: 0007
Revises: 0006

A new, empty table: existing libraries lose nothing, and photos scored before it existed are
treated as published (their metadata was written in the same run, or never asked for).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'metadata_holds',
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('held_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('path', name=op.f('pk_metadata_holds')),
    )


def downgrade() -> None:
    op.drop_table('metadata_holds')
