"""check-in private mode: a key per check-in, spent tokens, tokens taken per member

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

Check-in answers can come without a session, with an RFC 9474 token (issue 19 item 2, "private
mode tokens where the browser can, as for rounds"). New tables for the key and the spent tokens;
two columns on the ledger and one on the tally, added with defaults (no table is rebuilt).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkin_key',
    sa.Column('checkin_id', sa.Uuid(), nullable=False),
    sa.Column('public_der', sa.LargeBinary(), nullable=False),
    sa.Column('private_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('fingerprint', sa.String(length=40), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], name=op.f('fk_checkin_key_checkin_id_checkin'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_key')),
    sa.UniqueConstraint('checkin_id', name=op.f('uq_checkin_key_checkin_id'))
    )
    op.create_table('checkin_spent_token',
    sa.Column('checkin_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('receipt_hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], name=op.f('fk_checkin_spent_token_checkin_id_checkin'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('checkin_id', 'token_hash', name=op.f('pk_checkin_spent_token')),
    sqlite_with_rowid=False
    )
    op.add_column('checkin_participation', sa.Column('tokens', sa.Integer(), server_default='0', nullable=False))
    op.add_column('checkin_participation', sa.Column('token_request', sa.LargeBinary(length=32), nullable=True))
    op.add_column('checkin_tally', sa.Column('reissued', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('checkin_tally') as batch_op:
        batch_op.drop_column('reissued')
    with op.batch_alter_table('checkin_participation') as batch_op:
        batch_op.drop_column('token_request')
        batch_op.drop_column('tokens')
    op.drop_table('checkin_spent_token')
    op.drop_table('checkin_key')
