"""pulse surveys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from safespace.db.base import DateTimeUTC
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('lease',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=80), nullable=False),
    sa.Column('expires_at', DateTimeUTC(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_lease'))
    )
    op.create_table('custom_instrument',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_custom_instrument_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_instrument'))
    )
    with op.batch_alter_table('custom_instrument', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_custom_instrument_community_id'), ['community_id'], unique=False)

    op.create_table('survey',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('instruments', sa.JSON(), nullable=False),
    sa.Column('cadence', sa.JSON(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_survey_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey'))
    )
    with op.batch_alter_table('survey', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_community_id'), ['community_id'], unique=False)

    op.create_table('round',
    sa.Column('survey_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('opens_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('closes_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('min_group_size', sa.Integer(), nullable=False),
    sa.Column('instruments', sa.JSON(), nullable=False),
    sa.Column('population', sa.JSON(), nullable=False),
    sa.Column('reminder_sent', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_round_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['survey_id'], ['survey.id'], name=op.f('fk_round_survey_id_survey'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_round')),
    sa.UniqueConstraint('survey_id', 'number', name=op.f('uq_round_survey_id'))
    )
    with op.batch_alter_table('round', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_round_community_id'), ['community_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_round_survey_id'), ['survey_id'], unique=False)

    op.create_table('participation',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_participation_person_id_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_participation_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'person_id', name=op.f('pk_participation')),
    sqlite_with_rowid=False
    )
    op.create_table('pending_comment',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('instrument', sa.String(length=80), nullable=False),
    sa.Column('group_key', sa.String(length=40), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_pending_comment_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_comment'))
    )
    with op.batch_alter_table('pending_comment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_comment_round_id'), ['round_id'], unique=False)

    op.create_table('released_comment',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('instrument', sa.String(length=80), nullable=False),
    sa.Column('group_key', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_released_comment_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_released_comment'))
    )
    with op.batch_alter_table('released_comment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_released_comment_round_id'), ['round_id'], unique=False)

    op.create_table('round_mail',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_round_mail_person_id_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_round_mail_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'person_id', 'kind', name=op.f('pk_round_mail')),
    sqlite_with_rowid=False
    )
    op.create_table('tally',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('instrument', sa.String(length=80), nullable=False),
    sa.Column('group_key', sa.String(length=40), nullable=False),
    sa.Column('respondents', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_tally_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'instrument', 'group_key', name=op.f('pk_tally'))
    )



def downgrade() -> None:

    op.drop_table('tally')
    op.drop_table('round_mail')
    with op.batch_alter_table('released_comment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_released_comment_round_id'))

    op.drop_table('released_comment')
    with op.batch_alter_table('pending_comment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_comment_round_id'))

    op.drop_table('pending_comment')
    op.drop_table('participation')
    with op.batch_alter_table('round', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_round_survey_id'))
        batch_op.drop_index(batch_op.f('ix_round_community_id'))

    op.drop_table('round')
    with op.batch_alter_table('survey', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_community_id'))

    op.drop_table('survey')
    with op.batch_alter_table('custom_instrument', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_custom_instrument_community_id'))

    op.drop_table('custom_instrument')
    op.drop_table('lease')

