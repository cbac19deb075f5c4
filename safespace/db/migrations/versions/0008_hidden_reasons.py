"""why each team of a closed round is hidden: fewer than k answered, or it protects a smaller group

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('round') as batch:
        batch.add_column(sa.Column('hidden_teams', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('round') as batch:
        batch.drop_column('hidden_teams')
