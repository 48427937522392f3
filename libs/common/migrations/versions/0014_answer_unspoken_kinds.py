"""answer unspoken_kinds: why a retrieval hand-off had confidence 0 — the kinds of fact the question asks for
(price, duration, count; "opposite": the opposite of the operation it describes) that its best entry never speaks of

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 19:30:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unspoken_kinds', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_column('unspoken_kinds')
