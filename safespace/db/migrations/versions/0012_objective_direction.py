"""an objective's direction: raise the metric to the target, or lower it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The direction was guessed from the target and the baseline, so a target of 5% against a current
38% was taken as "lower it" and shown on track (issue 18 item 3). Now the facilitator says it and
the target is checked against it. Existing objectives keep the direction that was guessed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (ADD COLUMN on both databases), not a batch rebuild: see 0009.
    op.add_column('objective', sa.Column('direction', sa.String(5), nullable=False, server_default='raise'))
    op.execute("UPDATE objective SET direction = 'lower' WHERE baseline IS NOT NULL AND target < baseline")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE objective DROP COLUMN direction')  # in place (SQLite 3.35+), as 0009
    else:
        op.drop_column('objective', 'direction')
