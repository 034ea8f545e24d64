"""per-(model, status) task tallies for O(1) filtered totals

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_counts',
    sa.Column('embedding_model_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('embedding_model_id', 'status')
    )
    # back-fill from the tasks already there; start-up migrations hold an advisory lock and
    # run before the service takes requests
    op.execute(
        "INSERT INTO task_counts (embedding_model_id, status, n) "
        "SELECT embedding_model_id, status, count(*) FROM tasks "
        "GROUP BY embedding_model_id, status"
    )


def downgrade() -> None:
    op.drop_table('task_counts')
