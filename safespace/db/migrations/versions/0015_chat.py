"""chat: a community's chat (one sealed Apprise URL) and the posts waiting to go to it

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Round invitations, reminders and "results are out" reach a community's chat (issue 18 item 5).
A post names a round, never a member; the URL is sealed with the keyring like other secrets.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_channel',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('url_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('shown_as', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_failure', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_chat_channel_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', name=op.f('pk_chat_channel'))
    )
    op.create_table('chat_post',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('round_id', sa.Uuid(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("kind IN ('invitation', 'reminder', 'results', 'test')", name=op.f('ck_chat_post_known_kind')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_chat_post_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_chat_post_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_post'))
    )
    op.create_index(op.f('ix_chat_post_community_id'), 'chat_post', ['community_id'], unique=False)
    op.create_index(op.f('ix_chat_post_round_id'), 'chat_post', ['round_id'], unique=False)
    op.create_index(op.f('ix_chat_post_next_attempt_at'), 'chat_post', ['next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_chat_post_next_attempt_at'), table_name='chat_post')
    op.drop_index(op.f('ix_chat_post_round_id'), table_name='chat_post')
    op.drop_index(op.f('ix_chat_post_community_id'), table_name='chat_post')
    op.drop_table('chat_post')
    op.drop_table('chat_channel')
