"""grounding: retrieval on answers, correction targets on flags, live knowledge updates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 06:40:00
"""

from alembic import op
import sqlalchemy as sa

from libs.common.tables import UtcDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handoff', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('entry_ids', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('retrieval_scores', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('entry_question', sa.Text(), nullable=True))
    op.create_table(
        'knowledge_updates',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('entry_id', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('answer', sa.Text(), nullable=False),
        sa.Column('flag_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_knowledge_updates_entry_id', 'knowledge_updates', ['entry_id'])


def downgrade() -> None:
    op.drop_index('ix_knowledge_updates_entry_id', table_name='knowledge_updates')
    op.drop_table('knowledge_updates')
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.drop_column('entry_question')
        batch_op.drop_column('entry_id')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_column('confidence')
        batch_op.drop_column('retrieval_scores')
        batch_op.drop_column('entry_ids')
        batch_op.drop_column('handoff')
