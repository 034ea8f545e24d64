"""catalogue, clickstream sessions and batches

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('uq_batches_open', ['status'], unique=True, sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.create_table('items',
    sa.Column('object_id', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('object_id')
    )
    op.create_table('search_sessions',
    sa.Column('session_id', sa.String(length=200), nullable=False),
    sa.Column('batch_id', sa.String(length=32), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=True),
    sa.Column('search_meta', sa.JSON(), nullable=True),
    sa.Column('irrelevant', sa.Boolean(), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('session_id')
    )
    with op.batch_alter_table('search_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_search_sessions_batch', ['batch_id', 'session_id'], unique=False)

    op.create_table('session_results',
    sa.Column('session_id', sa.String(length=200), nullable=False),
    sa.Column('object_id', sa.String(length=200), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['search_sessions.session_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'object_id')
    )
    op.create_table('click_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('session_id', sa.String(length=200), nullable=False),
    sa.Column('object_id', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id', 'object_id'], ['session_results.session_id', 'session_results.object_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('click_events', schema=None) as batch_op:
        batch_op.create_index('ix_click_events_session', ['session_id', 'created_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('click_events', schema=None) as batch_op:
        batch_op.drop_index('ix_click_events_session')

    op.drop_table('click_events')
    op.drop_table('session_results')
    with op.batch_alter_table('search_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_search_sessions_batch')

    op.drop_table('search_sessions')
    op.drop_table('items')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('uq_batches_open', sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_index('ix_batches_created')

    op.drop_table('batches')
