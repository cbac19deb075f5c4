"""stories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('story_quota',
    sa.Column('key', sa.LargeBinary(length=32), nullable=False),
    sa.Column('week', sa.String(length=8), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_story_quota')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('story_quota', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_story_quota_week'), ['week'], unique=False)

    op.create_table('story',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decline_reason', sa.String(length=500), nullable=True),
    sa.Column('released_on', sa.Date(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('wants_advice', sa.Boolean(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('receipt_locator', sa.String(length=4), nullable=False),
    sa.Column('receipt_salt', sa.LargeBinary(length=16), nullable=False),
    sa.Column('receipt_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_story_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_story'))
    )
    with op.batch_alter_table('story', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_story_community_id'), ['community_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_story_receipt_locator'), ['receipt_locator'], unique=False)

    op.create_table('story_release',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('week', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_story_release_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', 'week', name=op.f('pk_story_release'))
    )
    op.create_table('reaction',
    sa.Column('story_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('marker', sa.LargeBinary(length=32), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['story.id'], name=op.f('fk_reaction_story_id_story'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reaction')),
    sa.UniqueConstraint('marker', name=op.f('uq_reaction_marker'))
    )
    with op.batch_alter_table('reaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reaction_story_id'), ['story_id'], unique=False)

    op.create_table('reply',
    sa.Column('story_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('released_on', sa.Date(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['story.id'], name=op.f('fk_reply_story_id_story'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reply'))
    )
    with op.batch_alter_table('reply', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reply_story_id'), ['story_id'], unique=False)

    op.create_table('flag',
    sa.Column('story_id', sa.Uuid(), nullable=False),
    sa.Column('reply_id', sa.Uuid(), nullable=True),
    sa.Column('marker', sa.LargeBinary(length=32), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['reply_id'], ['reply.id'], name=op.f('fk_flag_reply_id_reply'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['story_id'], ['story.id'], name=op.f('fk_flag_story_id_story'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flag')),
    sa.UniqueConstraint('marker', name=op.f('uq_flag_marker'))
    )
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flag_story_id'), ['story_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flag_story_id'))

    op.drop_table('flag')
    with op.batch_alter_table('reply', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reply_story_id'))

    op.drop_table('reply')
    with op.batch_alter_table('reaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reaction_story_id'))

    op.drop_table('reaction')
    op.drop_table('story_release')
    with op.batch_alter_table('story', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_story_receipt_locator'))
        batch_op.drop_index(batch_op.f('ix_story_community_id'))

    op.drop_table('story')
    with op.batch_alter_table('story_quota', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_story_quota_week'))

    op.drop_table('story_quota')

