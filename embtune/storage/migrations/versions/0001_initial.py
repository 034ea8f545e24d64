"""initial schema

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('abort_signals',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('abort_signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_abort_signals_expires_at'), ['expires_at'], unique=False)

    op.create_table('embedding_models',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plugin_name', sa.String(length=100), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('task_id', sa.String(length=32), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['embedding_models.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('embedding_models', schema=None) as batch_op:
        batch_op.create_index('ix_embedding_models_created', ['created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_embedding_models_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_embedding_models_task_id'), ['task_id'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('embedding_model_id', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('batch_id', sa.String(length=64), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('broker_id', sa.String(length=64), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('result_model_id', sa.String(length=32), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['embedding_model_id'], ['embedding_models.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_tasks_model_created', ['embedding_model_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_tasks_status_created', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_tasks_status_heartbeat', ['status', 'heartbeat_at'], unique=False)

    op.create_table('task_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.create_index('ix_task_events_task', ['task_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.drop_index('ix_task_events_task')

    op.drop_table('task_events')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_status_heartbeat')
        batch_op.drop_index('ix_tasks_status_created')
        batch_op.drop_index('ix_tasks_model_created')
        batch_op.drop_index('ix_tasks_created')

    op.drop_table('tasks')
    with op.batch_alter_table('embedding_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_embedding_models_task_id'))
        batch_op.drop_index(batch_op.f('ix_embedding_models_parent_id'))
        batch_op.drop_index('ix_embedding_models_created')

    op.drop_table('embedding_models')
    with op.batch_alter_table('abort_signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_abort_signals_expires_at'))

    op.drop_table('abort_signals')
