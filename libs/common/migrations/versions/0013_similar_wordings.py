"""similar wordings: a flag may attach the customer's question to an entry (``similar_to``); the knowledge update
that follows is a ``similar_add`` / ``similar_remove`` of that wording (no new column: ``question`` holds it)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 13:35:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('similar_to', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.drop_column('similar_to')
