"""live check-ins: a check-in, its tally, its participation ledger and its sealed comments

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

An anonymous pulse inside a meeting, revealed only when at least k answered (issue 19). The
ledger knows who joined and nothing else; the tally and the comments know what was answered and
nothing about who. No time or order is stored with an answer.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkin',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('instrument', sa.JSON(), nullable=False),
    sa.Column('prompt', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('min_group_size', sa.Integer(), nullable=False),
    sa.Column('comment_threshold', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=True),
    sa.Column('trend_survey_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("state IN ('open', 'closed', 'revealed')", name=op.f('ck_checkin_known_state')),
    sa.CheckConstraint("outcome IS NULL OR outcome IN ('trend', 'discarded')", name=op.f('ck_checkin_known_outcome')),
    sa.CheckConstraint('min_group_size >= 3', name=op.f('ck_checkin_min_group_size_at_least_3')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_checkin_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trend_survey_id'], ['survey.id'], name=op.f('fk_checkin_trend_survey_id_survey'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin')),
    sa.UniqueConstraint('code', name=op.f('uq_checkin_code'))
    )
    op.create_index(op.f('ix_checkin_community_id'), 'checkin', ['community_id'], unique=False)
    op.create_index(op.f('ix_checkin_trend_survey_id'), 'checkin', ['trend_survey_id'], unique=False)
    op.create_table('checkin_tally',
    sa.Column('checkin_id', sa.Uuid(), nullable=False),
    sa.Column('respondents', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], name=op.f('fk_checkin_tally_checkin_id_checkin'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('checkin_id', name=op.f('pk_checkin_tally'))
    )
    # No time, no order: WITHOUT ROWID on SQLite, so rows sit in (check-in, random person id) order.
    op.create_table('checkin_participation',
    sa.Column('checkin_id', sa.Uuid(), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('receipt_hash', sa.LargeBinary(length=32), nullable=True),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], name=op.f('fk_checkin_participation_checkin_id_checkin'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_checkin_participation_person_id_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('checkin_id', 'person_id', name=op.f('pk_checkin_participation')),
    sqlite_with_rowid=False
    )
    op.create_table('checkin_comment',
    sa.Column('checkin_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], name=op.f('fk_checkin_comment_checkin_id_checkin'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_comment'))
    )
    op.create_index(op.f('ix_checkin_comment_checkin_id'), 'checkin_comment', ['checkin_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_checkin_comment_checkin_id'), table_name='checkin_comment')
    op.drop_table('checkin_comment')
    op.drop_table('checkin_participation')
    op.drop_table('checkin_tally')
    op.drop_index(op.f('ix_checkin_trend_survey_id'), table_name='checkin')
    op.drop_index(op.f('ix_checkin_community_id'), table_name='checkin')
    op.drop_table('checkin')
