"""round summaries: "you said, we did", published once per closed round

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

A facilitator's words about a round's results and the actions taken, mailed to members and
posted to the community's chat (issue 18 item 2). Facilitator text about released results; nothing about a respondent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


OLD_KINDS = "kind IN ('invitation', 'reminder', 'results', 'test')"
NEW_KINDS = "kind IN ('invitation', 'reminder', 'results', 'summary', 'test')"


def upgrade() -> None:
    # The summary goes to the community's chat too. chat_post is rebuilt on SQLite (nothing
    # refers to it, so nothing cascades); pending posts are copied over.
    with op.batch_alter_table('chat_post') as batch:
        batch.drop_constraint(op.f('ck_chat_post_known_kind'), type_='check')
        batch.create_check_constraint('known_kind', NEW_KINDS)
    op.create_table('round_summary',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_round_summary_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', name=op.f('pk_round_summary'))
    )


def downgrade() -> None:
    op.drop_table('round_summary')
    op.execute("DELETE FROM chat_post WHERE kind = 'summary'")
    with op.batch_alter_table('chat_post') as batch:
        batch.drop_constraint(op.f('ck_chat_post_known_kind'), type_='check')
        batch.create_check_constraint('known_kind', OLD_KINDS)
