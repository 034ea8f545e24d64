"""Upgrading an empty database yields exactly the schema the ORM declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from embtune.storage import migrate
from embtune.storage.db import make_engine
from embtune.storage.tables import Base
from tests.support.backends import Backend


def test_upgrade_from_empty_matches_the_models(backend: Backend) -> None:
    engine = make_engine(backend.database_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # idempotent: a second start-up changes nothing
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
        tables = set(inspect(engine).get_table_names())
        assert {"tasks", "task_events", "embedding_models"} <= tables
        assert migrate.current_revision(engine) is not None
    finally:
        engine.dispose()
