"""insights: objectives, notes pinned to rounds, the comment threshold

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('community', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment_threshold', sa.Integer(), nullable=False, server_default='10'))
    # Communities whose k is above 10 start with a threshold of k (never below k).
    op.execute('UPDATE community SET comment_threshold = min_group_size WHERE min_group_size > comment_threshold')
    with op.batch_alter_table('community', schema=None) as batch_op:
        batch_op.create_check_constraint('comment_threshold_at_least_k', 'comment_threshold >= min_group_size')
    with op.batch_alter_table('round', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment_threshold', sa.Integer(), nullable=False, server_default='10'))
    op.execute('UPDATE round SET comment_threshold = min_group_size WHERE min_group_size > comment_threshold')

    op.create_table('objective',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=40), nullable=False),
    sa.Column('target', sa.Float(), nullable=False),
    sa.Column('baseline', sa.Float(), nullable=True),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("metric IN ('psychological_safety', 'favourable', 'trust', 'response_rate', 'stories_per_month', 'vitality')", name=op.f('ck_objective_known_metric')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_objective_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_objective'))
    )
    with op.batch_alter_table('objective', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_objective_community_id'), ['community_id'], unique=False)

    op.create_table('round_note',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_round_note_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_round_note'))
    )
    with op.batch_alter_table('round_note', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_round_note_round_id'), ['round_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('round_note', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_round_note_round_id'))
    op.drop_table('round_note')
    with op.batch_alter_table('objective', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_objective_community_id'))
    op.drop_table('objective')
    with op.batch_alter_table('round', schema=None) as batch_op:
        batch_op.drop_column('comment_threshold')
    with op.batch_alter_table('community', schema=None) as batch_op:
        batch_op.drop_constraint('comment_threshold_at_least_k', type_='check')
        batch_op.drop_column('comment_threshold')
