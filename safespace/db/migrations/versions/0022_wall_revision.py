"""the story wall's revision: a counter per community, bumped by triggers

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08

The wall keeps its rendered pages per process (stories/wall_page.py). It used to tell whether a
kept page was still right by reading the page's stories, replies and counts on every visit: the
largest part of a visit. Now the community's row carries `wall_revision`, which the database
itself bumps whenever something the wall shows changes: a released story (released, edited,
hidden, deleted), a released reply, a reaction. Triggers, not the app's code, so no write path
(a tick, moderation, a receipt edit, retention, a restore) can forget it. Pending stories and
replies do not bump it: they are not on the wall, and their writes stay where they were.

SQLite: a later migration that rebuilds the community table (batch_alter_table) must drop these
triggers first and create them again after, as SQLite checks triggers when a table is renamed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

_BUMP = "UPDATE community SET wall_revision = wall_revision + 1 WHERE id = {community}"
_BY_STORY = "(SELECT community_id FROM story WHERE id = {row}.story_id)"
# (trigger, table, event, condition, the row whose community is bumped)
_TRIGGERS = [
    ("wall_story_insert", "story", "INSERT", "NEW.status = 'released'", "NEW"),
    ("wall_story_update", "story", "UPDATE", "OLD.status = 'released' OR NEW.status = 'released'", "NEW"),
    ("wall_story_delete", "story", "DELETE", "OLD.status = 'released'", "OLD"),
    ("wall_reply_insert", "reply", "INSERT", "NEW.status = 'released'", "NEW"),
    ("wall_reply_update", "reply", "UPDATE", "OLD.status = 'released' OR NEW.status = 'released'", "NEW"),
    ("wall_reply_delete", "reply", "DELETE", "OLD.status = 'released'", "OLD"),
    ("wall_reaction_insert", "reaction", "INSERT", None, "NEW"),
    ("wall_reaction_update", "reaction", "UPDATE", None, "NEW"),
    ("wall_reaction_delete", "reaction", "DELETE", None, "OLD"),
]


def _community(table: str, row: str) -> str:
    return f"{row}.community_id" if table == "story" else _BY_STORY.format(row=row)


def _function(table: str, row: str) -> str:
    """PostgreSQL's trigger function for a table's NEW or OLD row: story rows name their
    community, replies and reactions their story."""
    return f"wall_bump_{'story' if table == 'story' else 'child'}_{row.lower()}"


def upgrade() -> None:
    op.add_column('community', sa.Column('wall_revision', sa.Integer(), server_default='0', nullable=False))
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # OR REPLACE: a schema emptied table by table keeps its functions (a restore drops them).
        for table in ("story", "reply"):
            for row in ("NEW", "OLD"):
                op.execute(f"CREATE OR REPLACE FUNCTION {_function(table, row)}() RETURNS trigger LANGUAGE plpgsql "
                           f"AS $$ BEGIN {_BUMP.format(community=_community(table, row))}; RETURN NULL; END $$")  # fmt: skip
    for name, table, event, condition, row in _TRIGGERS:
        when = f" WHEN ({condition})" if condition else ""
        if postgresql:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} EXECUTE FUNCTION {_function(table, row)}()")
        else:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} "
                       f"BEGIN {_BUMP.format(community=_community(table, row))}; END")  # fmt: skip


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, *_rest in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}" if postgresql else f"DROP TRIGGER {name}")
    if postgresql:
        for table in ("story", "reply"):
            for row in ("NEW", "OLD"):
                op.execute(f"DROP FUNCTION {_function(table, row)}()")
    with op.batch_alter_table('community') as batch_op:
        batch_op.drop_column('wall_revision')
