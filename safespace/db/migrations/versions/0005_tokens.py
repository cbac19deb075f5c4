"""answer tokens: round and story keys, spent tokens (RFC 9474 blind signatures)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('community', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_tokens', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('participation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_request', sa.LargeBinary(length=32), nullable=True))

    op.create_table('round_key',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('group_key', sa.String(length=40), nullable=False),
    sa.Column('public_der', sa.LargeBinary(), nullable=False),
    sa.Column('private_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('fingerprint', sa.String(length=40), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_round_key_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_round_key')),
    sa.UniqueConstraint('round_id', 'group_key', name=op.f('uq_round_key_round_id'))
    )
    with op.batch_alter_table('round_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_round_key_round_id'), ['round_id'], unique=False)

    op.create_table('spent_token',
    sa.Column('round_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_spent_token_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'token_hash', name=op.f('pk_spent_token')),
    sqlite_with_rowid=False
    )

    op.create_table('story_key',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('week', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('public_der', sa.LargeBinary(), nullable=False),
    sa.Column('private_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('fingerprint', sa.String(length=40), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_story_key_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_story_key')),
    sa.UniqueConstraint('community_id', 'week', 'kind', name=op.f('uq_story_key_community_id'))
    )
    with op.batch_alter_table('story_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_story_key_community_id'), ['community_id'], unique=False)

    op.create_table('story_spent_token',
    sa.Column('key_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['story_key.id'], name=op.f('fk_story_spent_token_key_id_story_key'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', 'token_hash', name=op.f('pk_story_spent_token')),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('story_spent_token')
    with op.batch_alter_table('story_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_story_key_community_id'))
    op.drop_table('story_key')
    op.drop_table('spent_token')
    with op.batch_alter_table('round_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_round_key_round_id'))
    op.drop_table('round_key')
    with op.batch_alter_table('participation', schema=None) as batch_op:
        batch_op.drop_column('token_request')
    with op.batch_alter_table('community', schema=None) as batch_op:
        batch_op.drop_column('require_tokens')
