"""judged evaluation sets, a model's default set, aliases and their history

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'evaluation_sets',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('queries_count', sa.Integer(), nullable=False),
        sa.Column('judgements_count', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name', name='uq_evaluation_sets_name'),
    )
    op.create_index('ix_evaluation_sets_created', 'evaluation_sets', ['created_at', 'id'])
    op.create_table(
        'evaluation_queries',
        sa.Column('set_id', sa.String(length=32), nullable=False),
        sa.Column('query_id', sa.String(length=200), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['set_id'], ['evaluation_sets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('set_id', 'query_id'),
    )
    op.create_table(
        'evaluation_judgements',
        sa.Column('set_id', sa.String(length=32), nullable=False),
        sa.Column('query_id', sa.String(length=200), nullable=False),
        sa.Column('object_id', sa.String(length=200), nullable=False),
        sa.Column('grade', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['set_id', 'query_id'],
            ['evaluation_queries.set_id', 'evaluation_queries.query_id'],
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('set_id', 'query_id', 'object_id'),
    )
    # ADD COLUMN with an inline REFERENCES on SQLite: no table copy, which there would mean
    # dropping a table that tasks reference
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            'ALTER TABLE embedding_models ADD COLUMN evaluation_set_id VARCHAR(32) '
            'CONSTRAINT fk_embedding_models_evaluation_set '
            'REFERENCES evaluation_sets (id)'
        )
    else:
        op.add_column('embedding_models',
                      sa.Column('evaluation_set_id', sa.String(length=32), nullable=True))
        op.create_foreign_key(
            'fk_embedding_models_evaluation_set', 'embedding_models', 'evaluation_sets',
            ['evaluation_set_id'], ['id'],
        )
    op.create_table(
        'aliases',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('model_id', sa.String(length=32), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['embedding_models.id'], ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'alias_changes',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('alias', sa.String(length=100), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('model_id', sa.String(length=32), nullable=False),
        sa.Column('previous_model_id', sa.String(length=32), nullable=True),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['alias'], ['aliases.name'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('alias', 'version', name='uq_alias_changes_version'),
    )


def downgrade() -> None:
    op.drop_table('alias_changes')
    op.drop_table('aliases')
    if op.get_bind().dialect.name == 'sqlite':  # DROP COLUMN refuses a referencing column
        op.execute('PRAGMA foreign_keys=OFF')
        with op.batch_alter_table('embedding_models', schema=None) as batch_op:
            batch_op.drop_column('evaluation_set_id')
        op.execute('PRAGMA foreign_keys=ON')
    else:
        op.drop_constraint('fk_embedding_models_evaluation_set', 'embedding_models',
                           type_='foreignkey')
        op.drop_column('embedding_models', 'evaluation_set_id')
    op.drop_table('evaluation_judgements')
    op.drop_table('evaluation_queries')
    op.drop_index('ix_evaluation_sets_created', table_name='evaluation_sets')
    op.drop_table('evaluation_sets')
