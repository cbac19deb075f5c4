"""actions: what the community will do about a result, and each action's log

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

Results led nowhere in the product (issue 18 item 1). An action names a round's result (an
instrument and, optionally, a statement), never a respondent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('action',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('round_id', sa.Uuid(), nullable=True),
    sa.Column('instrument', sa.String(length=80), nullable=True),
    sa.Column('item', sa.String(length=80), nullable=True),
    sa.Column('owner', sa.String(length=120), nullable=True),
    sa.Column('due_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("status IN ('planned', 'in_progress', 'done', 'dropped')", name=op.f('ck_action_known_status')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_action_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_action_round_id_round'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action'))
    )
    op.create_index('ix_action_community_created', 'action', ['community_id', 'created_at'], unique=False)
    op.create_table('action_update',
    sa.Column('action_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['action.id'], name=op.f('fk_action_update_action_id_action'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_update'))
    )
    op.create_index('ix_action_update_action_time', 'action_update', ['action_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_action_update_action_time', table_name='action_update')
    op.drop_table('action_update')
    op.drop_index('ix_action_community_created', table_name='action')
    op.drop_table('action')
