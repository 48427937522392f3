"""drift checks: every question-drift check with its window, figures, thresholds, crossings and top clusters

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 09:00:00
"""

from alembic import op
import sqlalchemy as sa

from libs.common.tables import UtcDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'drift_checks',
        sa.Column('check_id', sa.String(length=64), nullable=False),
        sa.Column('checked_at', UtcDateTime(), nullable=False),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('engine_id', sa.String(length=64), nullable=False),
        sa.Column('dataset_id', sa.String(length=64), nullable=False),
        sa.Column('window_start', UtcDateTime(), nullable=False),
        sa.Column('window_end', UtcDateTime(), nullable=False),
        sa.Column('questions', sa.Integer(), nullable=False),
        sa.Column('reference_questions', sa.Integer(), nullable=False),
        sa.Column('figures', sa.JSON(), nullable=False),
        sa.Column('thresholds', sa.JSON(), nullable=False),
        sa.Column('crossed', sa.JSON(), nullable=False),
        sa.Column('judged', sa.Boolean(), nullable=False),
        sa.Column('drifted', sa.Boolean(), nullable=False),
        sa.Column('clusters', sa.JSON(), nullable=False),
        sa.Column('event_id', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('check_id', name=op.f('pk_drift_checks')),
    )
    op.create_index('ix_drift_checks_checked_at', 'drift_checks', ['checked_at'])


def downgrade() -> None:
    op.drop_index('ix_drift_checks_checked_at', table_name='drift_checks')
    op.drop_table('drift_checks')
