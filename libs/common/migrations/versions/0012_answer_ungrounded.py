"""answer ungrounded: a hand-off by the answer check (the engine's answer was not drawn from its references)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 05:40:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ungrounded', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_column('ungrounded')
