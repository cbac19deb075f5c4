"""trend page: a survey's rounds by state and number, notes by round and time (index-only reads)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_round_survey_state', 'round', ['survey_id', 'closed', 'number', 'id'], unique=False)
    op.drop_index('ix_round_survey_id', table_name='round')
    op.create_index('ix_round_note_round_time', 'round_note', ['round_id', 'created_at'], unique=False)
    op.drop_index('ix_round_note_round_id', table_name='round_note')


def downgrade() -> None:
    op.create_index('ix_round_note_round_id', 'round_note', ['round_id'], unique=False)
    op.drop_index('ix_round_note_round_time', table_name='round_note')
    op.create_index('ix_round_survey_id', 'round', ['survey_id'], unique=False)
    op.drop_index('ix_round_survey_state', table_name='round')
