"""community names are unique on an installation, compared without case or extra spaces

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

`create-community` used to accept a name already in use, and `invite --community` then picked
one of the two (issue 21 item 5). A database may therefore hold the same name twice: the oldest
community keeps it, each later one is renamed "Gold (2)", "Gold (3)", ... (a name no community
had), and every rename is logged as a warning so the operator can tell its facilitators.
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

log = logging.getLogger("safespace.migrations")
NAME_LENGTH = 120


def _key(name: str) -> str:
    # safespace.identity.models.community_name_key as of this revision; a migration keeps its own
    # copy, so a later change there cannot change what this one did.
    return unicodedata.normalize("NFKC", " ".join(name.split())).casefold()


def upgrade() -> None:
    # Added in place (ALTER TABLE ... ADD COLUMN on both databases): rebuilding the table, as
    # batch mode would on SQLite, drops it, and with foreign keys on that deletes its members.
    op.add_column('community', sa.Column('name_key', sa.Text(), nullable=False, server_default=''))
    community = sa.table(
        'community', sa.column('id', sa.Uuid()), sa.column('name', sa.String()),
        sa.column('name_key', sa.Text()), sa.column('created_at'),
    )  # fmt: skip
    connection = op.get_bind()
    rows = connection.execute(sa.select(community.c.id, community.c.name).order_by(community.c.created_at, community.c.id)).all()
    before = {_key(name) for _id, name in rows}
    taken: set[str] = set()
    for community_id, name in rows:
        new_name = name
        number = 2
        while _key(new_name) in taken or (new_name != name and _key(new_name) in before):
            suffix = f" ({number})"
            new_name = name[: NAME_LENGTH - len(suffix)].rstrip() + suffix
            number += 1
        if new_name != name:
            log.warning("community %s renamed from %r to %r: two communities may no longer share a name",
                        community_id, name, new_name)  # fmt: skip
        taken.add(_key(new_name))
        connection.execute(
            community.update().where(community.c.id == community_id).values(name=new_name, name_key=_key(new_name))
        )
    if connection.dialect.name == 'postgresql':  # SQLite cannot drop a default without rebuilding the table
        op.alter_column('community', 'name_key', server_default=None)
    op.create_index('ix_community_name_key', 'community', ['name_key'], unique=True)


def downgrade() -> None:
    # Communities renamed by the upgrade keep their new names.
    op.drop_index('ix_community_name_key', table_name='community')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE community DROP COLUMN name_key')  # in place, as above (SQLite 3.35+)
    else:
        op.drop_column('community', 'name_key')
