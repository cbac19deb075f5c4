"""facilitators' notifications: events waiting for a digest, kinds turned off, items announced

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Facilitators got no mail when a round closed or stories waited (issue 18 item 4). A notification
row names a facilitator, a community, a kind and at most a round: never a member, a story or a
figure (the digest reads those when it is sent, through surveys.disclosure).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notification',
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('round_id', sa.Uuid(), nullable=True),
    sa.Column('noted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_notification_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_notification_person_id_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_notification_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification'))
    )
    op.create_index(op.f('ix_notification_person_id'), 'notification', ['person_id'], unique=False)
    op.create_table('notification_off',
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_notification_off_community_id_community'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_notification_off_person_id_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('person_id', 'community_id', 'kind', name=op.f('pk_notification_off'))
    )
    op.create_table('notification_watch',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('seen', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_notification_watch_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', 'kind', name=op.f('pk_notification_watch'))
    )


def downgrade() -> None:
    op.drop_table('notification_watch')
    op.drop_table('notification_off')
    op.drop_index(op.f('ix_notification_person_id'), table_name='notification')
    op.drop_table('notification')
