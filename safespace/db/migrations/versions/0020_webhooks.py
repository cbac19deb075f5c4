"""webhooks: a community's HTTPS endpoints (secret sealed) and the deliveries noted for them

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Round opened, round closed, story batch released and action published reach the endpoints a
community's facilitators registered (issue 20 item 5), signed with a per-endpoint secret. Tables
of their own: the community table is left alone (SQLite's batch mode would recreate it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_endpoint',
    sa.Column('community_id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_failure', sa.String(length=300), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['community.id'], name=op.f('fk_webhook_endpoint_community_id_community'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    op.create_index(op.f('ix_webhook_endpoint_community_id'), 'webhook_endpoint', ['community_id'], unique=False)
    op.create_table('webhook_delivery',
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('round_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.String(length=300), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("status IN ('waiting', 'delivered', 'given_up')", name=op.f('ck_webhook_delivery_known_status')),
    sa.CheckConstraint("event IN ('round.opened', 'round.closed', 'stories.released', 'action.published', 'ping')", name=op.f('ck_webhook_delivery_known_event')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], name=op.f('fk_webhook_delivery_round_id_round'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery'))
    )
    op.create_index(op.f('ix_webhook_delivery_endpoint_id'), 'webhook_delivery', ['endpoint_id'], unique=False)
    op.create_index(op.f('ix_webhook_delivery_round_id'), 'webhook_delivery', ['round_id'], unique=False)
    op.create_index(op.f('ix_webhook_delivery_next_attempt_at'), 'webhook_delivery', ['next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_webhook_delivery_next_attempt_at'), table_name='webhook_delivery')
    op.drop_index(op.f('ix_webhook_delivery_round_id'), table_name='webhook_delivery')
    op.drop_index(op.f('ix_webhook_delivery_endpoint_id'), table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_index(op.f('ix_webhook_endpoint_community_id'), table_name='webhook_endpoint')
    op.drop_table('webhook_endpoint')
