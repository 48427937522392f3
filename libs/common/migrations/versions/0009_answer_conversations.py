"""answer conversations: the conversation an answer belongs to (gRPC conversation_id / OpenAI metadata or header)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:35:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('conversation_id', sa.String(length=64), nullable=True))
    op.create_index('ix_answers_conversation_id', 'answers', ['conversation_id'])


def downgrade() -> None:
    op.drop_index('ix_answers_conversation_id', table_name='answers')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_column('conversation_id')
