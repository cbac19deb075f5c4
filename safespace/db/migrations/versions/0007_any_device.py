"""private mode on any device: a second answer token per member and round, counted at close

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('participation') as batch:
        batch.add_column(sa.Column('reissued', sa.Boolean(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('second_request', sa.LargeBinary(length=32), nullable=True))
    with op.batch_alter_table('round') as batch:
        batch.add_column(sa.Column('reissued', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('round') as batch:
        batch.drop_column('reissued')
    with op.batch_alter_table('participation') as batch:
        batch.drop_column('second_request')
        batch.drop_column('reissued')
