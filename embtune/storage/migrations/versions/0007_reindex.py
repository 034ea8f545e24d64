"""task kinds (reindex tasks share the fine-tuning lifecycle), per-kind task tallies, the
collections written into vector sinks, and an alias's sink

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

RECOUNT = (
    "INSERT INTO task_counts (kind, embedding_model_id, status, n) "
    "SELECT kind, embedding_model_id, status, count(*) FROM tasks "
    "GROUP BY kind, embedding_model_id, status"
)


def upgrade() -> None:
    op.add_column(
        'tasks',
        sa.Column('kind', sa.String(length=16), nullable=False,
                  server_default=sa.text("'fine_tuning'")),
    )
    op.create_index('ix_tasks_kind_created', 'tasks', ['kind', 'created_at', 'id'])
    # the tallies gain the kind in their key: rebuilt from the tasks (locked on PostgreSQL)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('LOCK TABLE tasks IN SHARE MODE')
    op.drop_table('task_counts')
    op.create_table(
        'task_counts',
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('embedding_model_id', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'embedding_model_id', 'status'),
    )
    op.execute(RECOUNT)
    op.create_table(
        'sink_collections',
        sa.Column('sink_key', sa.String(length=300), nullable=False),
        sa.Column('collection', sa.String(length=200), nullable=False),
        sa.Column('sink_type', sa.String(length=50), nullable=False),
        sa.Column('sink', sa.JSON(), nullable=False),
        sa.Column('model_id', sa.String(length=32), nullable=False),
        sa.Column('task_id', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sink_key', 'collection'),
    )
    op.create_index('ix_sink_collections_model', 'sink_collections',
                    ['model_id', 'state', 'updated_at'])
    op.create_index('ix_sink_collections_sink', 'sink_collections',
                    ['sink_key', 'state', 'updated_at'])
    op.add_column('aliases', sa.Column('sink', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_column('sink')
    op.drop_index('ix_sink_collections_sink', table_name='sink_collections')
    op.drop_index('ix_sink_collections_model', table_name='sink_collections')
    op.drop_table('sink_collections')
    op.execute("DELETE FROM tasks WHERE kind != 'fine_tuning'")
    op.drop_table('task_counts')
    op.create_table(
        'task_counts',
        sa.Column('embedding_model_id', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('embedding_model_id', 'status'),
    )
    op.execute(
        "INSERT INTO task_counts (embedding_model_id, status, n) "
        "SELECT embedding_model_id, status, count(*) FROM tasks "
        "GROUP BY embedding_model_id, status"
    )
    op.drop_index('ix_tasks_kind_created', table_name='tasks')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('kind')
