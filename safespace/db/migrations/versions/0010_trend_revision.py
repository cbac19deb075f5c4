"""a survey's trend revision: a counter bumped when a round closes or a note changes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

The kept trend charts were keyed by the count of closed rounds and notes and the latest note's
time; a note deleted and another added by a replica whose clock runs behind gave the same key,
and the old drawing came back (issue 16 item 3). Existing surveys start at 0: charts are kept in
memory only, so no process holds a drawing under the new key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (ADD COLUMN on both databases), not a batch rebuild: see 0009.
    op.add_column('survey', sa.Column('trend_revision', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE survey DROP COLUMN trend_revision')  # in place (SQLite 3.35+), as 0009
    else:
        op.drop_column('survey', 'trend_revision')
