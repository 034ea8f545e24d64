"""throughput samples: what workers measured (encode and train rates, fixed costs) per host,
for preflight's estimate and a running task's ETA

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'throughput_samples',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('host', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('model_params', sa.BigInteger(), nullable=False),
        sa.Column('model_id', sa.String(length=32), nullable=True),
        sa.Column('requested_precision', sa.String(length=10), nullable=False),
        sa.Column('precision', sa.String(length=10), nullable=False),
        sa.Column('device', sa.String(length=20), nullable=False),
        sa.Column('seq_length', sa.Integer(), nullable=False),
        sa.Column('batch_size', sa.Integer(), nullable=False),
        sa.Column('units', sa.Float(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('task_id', sa.String(length=32), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_throughput_samples_host', 'throughput_samples',
                    ['host', 'kind', 'recorded_at'])
    op.create_index('ix_throughput_samples_recorded', 'throughput_samples', ['recorded_at'])


def downgrade() -> None:
    op.drop_index('ix_throughput_samples_recorded', table_name='throughput_samples')
    op.drop_index('ix_throughput_samples_host', table_name='throughput_samples')
    op.drop_table('throughput_samples')
