"""import tasks (a task of no model: tasks.embedding_model_id becomes nullable), their
committed progress and rejected rows, item tombstones, pruned batches, the audit trail, and
the index that finds one user's sessions

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite cannot drop a NOT NULL in place: the table is rebuilt (with foreign keys off,
        # see `embtune.storage.migrate`, so dropping the old table cascades to nothing). The
        # partial index is made again by hand: reflection may not carry its WHERE.
        with op.batch_alter_table('tasks', recreate='always') as batch:
            batch.alter_column('embedding_model_id', existing_type=sa.String(length=32),
                               nullable=True)
        op.execute('DROP INDEX IF EXISTS ix_tasks_batch')
        op.create_index('ix_tasks_batch', 'tasks', ['batch_id'],
                        sqlite_where=sa.text('batch_id IS NOT NULL'))
    else:
        op.alter_column('tasks', 'embedding_model_id', existing_type=sa.String(length=32),
                        nullable=True)
    # session results lose their per-row-checked foreign key to sessions (see tables.py)
    if op.get_bind().dialect.name == 'sqlite':  # unnamed there: the table is rebuilt
        op.create_table(
            'session_results_new',
            sa.Column('session_id', sa.String(length=200), nullable=False),
            sa.Column('object_id', sa.String(length=200), nullable=False),
            sa.Column('rank', sa.Integer(), nullable=False),
            sa.Column('position', sa.Integer(), nullable=False),
            sa.Column('meta', sa.JSON(), nullable=True),
            sa.PrimaryKeyConstraint('session_id', 'object_id'),
        )
        op.execute('INSERT INTO session_results_new (session_id, object_id, rank, position, '
                   'meta) SELECT session_id, object_id, rank, position, meta '
                   'FROM session_results')
        op.drop_table('session_results')
        op.rename_table('session_results_new', 'session_results')
    else:
        op.drop_constraint('session_results_session_id_fkey', 'session_results',
                           type_='foreignkey')
    op.add_column('batches', sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_search_sessions_user', 'search_sessions', ['user_id'])
    op.create_table(
        'item_tombstones',
        sa.Column('object_id', sa.String(length=200), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('object_id'),
    )
    op.create_table(
        'import_progress',
        sa.Column('task_id', sa.String(length=32), nullable=False),
        sa.Column('position', sa.JSON(), nullable=False),
        sa.Column('rows_read', sa.BigInteger(), nullable=False),
        sa.Column('bytes_read', sa.BigInteger(), nullable=False),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('accepted', sa.BigInteger(), nullable=False),
        sa.Column('duplicate', sa.BigInteger(), nullable=False),
        sa.Column('conflict', sa.BigInteger(), nullable=False),
        sa.Column('rejected', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('task_id'),
    )
    op.create_table(
        'import_rejections',
        sa.Column('task_id', sa.String(length=32), nullable=False),
        sa.Column('row', sa.BigInteger(), nullable=False),
        sa.Column('field', sa.String(length=300), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('excerpt', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('task_id', 'row'),
    )
    op.create_table(
        'audit_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('action', sa.String(length=50), nullable=False),
        sa.Column('actor', sa.String(length=100), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_events_created', 'audit_events', ['created_at', 'id'])


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.create_foreign_key('session_results_session_id_fkey', 'session_results',
                              'search_sessions', ['session_id'], ['session_id'],
                              ondelete='CASCADE')
    op.drop_index('ix_audit_events_created', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_table('import_rejections')
    op.drop_table('import_progress')
    op.drop_table('item_tombstones')
    op.drop_index('ix_search_sessions_user', table_name='search_sessions')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('pruned_at')
