"""a task's broker_id is its message_id (the id of the queue message that may run it)

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a rename in place on both databases (SQLite has RENAME COLUMN since 3.25): no table copy
    op.execute('ALTER TABLE tasks RENAME COLUMN broker_id TO message_id')


def downgrade() -> None:
    op.execute('ALTER TABLE tasks RENAME COLUMN message_id TO broker_id')
