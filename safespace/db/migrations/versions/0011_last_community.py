"""a person's last-opened community: signing in again lands there, not on the chooser

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10

The community "/" opens was kept on the browser's session only, and every sign-in starts a new
session: once a person belonged to two communities, each sign-in landed on the chooser (issue 17
item 6). Which community a person last opened says nothing about their answers or stories.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (ADD COLUMN on both databases), not a batch rebuild: see 0009. No foreign key:
    # SQLite cannot add a named one in place, and the id is only ever used through an active
    # membership of the community, so a stale one leads nowhere.
    op.add_column('person', sa.Column('last_community_id', sa.Uuid(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE person DROP COLUMN last_community_id')  # in place (SQLite 3.35+), as 0009
    else:
        op.drop_column('person', 'last_community_id')
