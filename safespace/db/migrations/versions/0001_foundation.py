"""foundation: people, communities, teams, sign-in

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from safespace.db.base import DateTimeUTC
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('community',
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('vision', sa.Text(), nullable=False),
    sa.Column('min_group_size', sa.Integer(), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('moderate_stories', sa.Boolean(), nullable=False),
    sa.Column('story_tags', sa.JSON(), nullable=True),
    sa.Column('story_release_weekday', sa.Integer(), nullable=True),
    sa.Column('story_release_hour', sa.Integer(), nullable=True),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint('min_group_size >= 3', name=op.f('ck_community_min_group_size_at_least_3')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_community'))
    )
    op.create_table('person',
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=80), nullable=False),
    sa.Column('language', sa.String(length=5), nullable=True),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person')),
    sa.UniqueConstraint('email', name=op.f('uq_person_email'))
    )
    op.create_table('rate_counter',
    sa.Column('key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('window_start', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start', name=op.f('pk_rate_counter'))
    )
    op.create_table('login_link',
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('expires_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('used_at', DateTimeUTC(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_login_link_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_login_link_person_id_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_link')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_login_link_token_hash'))
    )
    with op.batch_alter_table('login_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_link_person_id'), ['person_id'], unique=False)

    op.create_table('team',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_team_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team')),
    sa.UniqueConstraint('community_id', 'name', name=op.f('uq_team_community_id'))
    )
    op.create_table('web_session',
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('last_seen_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('flash', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_web_session_community_id_community'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_web_session_person_id_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_session')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_web_session_token_hash'))
    )
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_session_person_id'), ['person_id'], unique=False)

    op.create_table('membership',
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('created_at', DateTimeUTC(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("role in ('member', 'facilitator')", name=op.f('ck_membership_known_role')),
    sa.CheckConstraint("status in ('invited', 'active', 'deactivated')", name=op.f('ck_membership_known_status')),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_membership_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_membership_person_id_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_membership_team_id_team'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_membership')),
    sa.UniqueConstraint('person_id', 'community_id', name=op.f('uq_membership_person_id'))
    )
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_membership_community_id'), ['community_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_membership_community_id'))

    op.drop_table('membership')
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_session_person_id'))

    op.drop_table('web_session')
    op.drop_table('team')
    with op.batch_alter_table('login_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_link_person_id'))

    op.drop_table('login_link')
    op.drop_table('rate_counter')
    op.drop_table('person')
    op.drop_table('community')

