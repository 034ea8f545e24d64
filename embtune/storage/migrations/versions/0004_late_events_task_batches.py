"""late click events are flagged; the tasks naming a batch are indexed

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # events stored before this revision were all on time: a released batch refused them
    with op.batch_alter_table('click_events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('late', sa.Boolean(), server_default=sa.text('false'), nullable=False)
        )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(
            'ix_tasks_batch', ['batch_id'], unique=False,
            sqlite_where=sa.text('batch_id IS NOT NULL'),
            postgresql_where=sa.text('batch_id IS NOT NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_batch')
    with op.batch_alter_table('click_events', schema=None) as batch_op:
        batch_op.drop_column('late')
