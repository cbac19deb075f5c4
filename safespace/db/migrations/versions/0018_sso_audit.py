"""single sign-on and the audit log

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

OpenID Connect sign-in (issue 20 item 1): a community may require it, and a sign-in under way is
kept by its state's hash until the provider sends the browser back. The audit log (item 3): what
facilitators and operators did, who and when; never a member's answer, story or reading.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sso_required',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_sso_required_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('community_id', name=op.f('pk_sso_required'))
    )
    op.create_table('sso_attempt',
    sa.Column('state_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=False),
    sa.Column('next_path', sa.Text(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_attempt')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_sso_attempt_state_hash'))
    )
    op.create_table('audit_entry',
    sa.Column('community_id', sa.Uuid(), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_audit_entry_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry'))
    )
    op.create_index('ix_audit_entry_community_at', 'audit_entry', ['community_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_entry_community_at', table_name='audit_entry')
    op.drop_table('audit_entry')
    op.drop_table('sso_attempt')
    op.drop_table('sso_required')
