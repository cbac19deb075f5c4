"""retention: a community may delete its old results and stories

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Per community, closed rounds and check-ins (their tallies and comments) and stories older than a
chosen number of days are deleted by the schedule (issue 20 item 4). No row: kept (the default).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retention',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.CheckConstraint('days >= 91', name=op.f('ck_retention_at_least_91_days')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_retention_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', name=op.f('pk_retention'))
    )


def downgrade() -> None:
    op.drop_table('retention')
