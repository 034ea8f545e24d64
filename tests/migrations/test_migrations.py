"""Upgrading an empty database yields exactly the schema the ORM declares, on both databases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from embtune.storage import migrate, task_counts
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


def _insert_tasks(engine: Engine, rows: list[tuple[str, str, str]]) -> None:
    """Tasks written with plain SQL (an older release, or a bulk load): no tallies kept."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        known = set(connection.scalars(text("SELECT id FROM embedding_models")))
        for model_id in sorted({m for _, _, m in rows} - known):
            connection.execute(
                text("INSERT INTO embedding_models (id, name, plugin_name, source, metrics, "
                     "created_at) VALUES (:id, 'm', 'sleepy', 'builtin:x', NULL, :now)"),
                {"id": model_id, "now": now},
            )
        for task_id, status, model_id in rows:
            connection.execute(
                text("INSERT INTO tasks (id, status, embedding_model_id, request_hash, params, "
                     "meta, attempts, created_at, updated_at) VALUES "
                     "(:id, :status, :model, 'h', '{}', '{}', 0, :now, :now)"),
                {"id": task_id, "status": status, "model": model_id, "now": now},
            )


def _totals(engine: Engine) -> dict[tuple[str, str], int]:
    with Session(engine) as session:
        return {
            (m, s): task_counts.total(session, status=s, embedding_model_id=m)
            for m in ("ma", "mb") for s in ("pending", "done", "failed")
        }


def test_task_tallies_are_back_filled_by_the_migration_and_rebuilt_by_recount(
    backend: Backend,
) -> None:
    engine = make_engine(backend.database_url)
    rows = [(f"t{i}", ("pending", "done", "done", "failed")[i % 4], ("ma", "mb")[i % 3 == 0])
            for i in range(30)]
    expected = Counter((m, s) for _, s, m in rows)
    try:
        migrate.upgrade(engine, "0002")  # the schema before the tallies existed
        _insert_tasks(engine, rows)
        migrate.upgrade(engine)
        assert _totals(engine) == {k: expected.get(k, 0) for k in _totals(engine)}

        _insert_tasks(engine, [("late1", "failed", "mc"), ("late2", "failed", "ma")])
        with Session(engine) as session:  # the bulk load bypassed the tallies…
            assert task_counts.total(session, status="failed") == expected_failed(expected)
        with Session(engine) as session, session.begin():
            task_counts.recount(session)  # …`embtune db recount` rebuilds them
        with Session(engine) as session:
            assert task_counts.total(session, status="failed") == expected_failed(expected) + 2
            assert task_counts.total(session, embedding_model_id="mc") == 1
            assert task_counts.total(session) == len(rows) + 2
    finally:
        engine.dispose()


def expected_failed(expected: Counter[tuple[str, str]]) -> int:
    return sum(n for (_, s), n in expected.items() if s == "failed")


def test_tasks_rebuilt_for_tasks_of_no_model_keep_their_events(backend: Backend) -> None:
    """0008 makes `tasks.embedding_model_id` nullable; on SQLite that rebuilds the table, which
    must not cascade into the events (foreign keys are off while migrations run)."""
    engine = make_engine(backend.database_url)
    now = datetime.now(UTC)
    try:
        migrate.upgrade(engine, "0007")
        _insert_tasks(engine, [("t1", "done", "ma")])
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO task_events (task_id, kind, from_status, to_status, message, "
                     "created_at) VALUES ('t1', 'transition', NULL, 'done', 'kept', :now)"),
                {"now": now})
            connection.execute(text(  # a session with its results and a click
                "INSERT INTO batches (id, status, created_at) VALUES ('b1', 'open', :now)"),
                {"now": now})
            connection.execute(text(
                "INSERT INTO search_sessions (session_id, batch_id, query, irrelevant, "
                "request_hash, created_at, received_at) VALUES ('s1', 'b1', 'q', false, 'h', "
                ":now, :now)"), {"now": now})
            for rank, object_id in enumerate(("a", "b"), start=1):
                connection.execute(text(
                    "INSERT INTO session_results (session_id, object_id, rank, position) "
                    "VALUES ('s1', :o, :r, :r)"), {"o": object_id, "r": rank})
            connection.execute(text(
                "INSERT INTO click_events (event_id, session_id, object_id, event_type, "
                "created_at, received_at, late) VALUES ('e1', 's1', 'b', 'click', :now, :now, "
                "false)"), {"now": now})
        migrate.upgrade(engine)
        with engine.begin() as connection:
            assert connection.scalar(text("SELECT message FROM task_events")) == "kept"
            # 0008 rebuilds session_results on SQLite: its rows and the clicks naming them stay
            assert connection.scalar(text("SELECT count(*) FROM session_results")) == 2
            assert connection.scalar(text(
                "SELECT count(*) FROM click_events e JOIN session_results r "
                "ON r.session_id = e.session_id AND r.object_id = e.object_id")) == 1
            connection.execute(  # a task of no model
                text("INSERT INTO tasks (id, kind, status, request_hash, params, meta, attempts, "
                     "created_at, updated_at) VALUES ('i1', 'import', 'pending', 'h', '{}', "
                     "'{}', 0, :now, :now)"), {"now": now})
            if backend.database == "sqlite":
                sql = connection.scalar(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'ix_tasks_batch'"))
                assert "WHERE" in sql.upper()
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with Session(engine) as session, session.begin():
            task_counts.recount(session)
        with Session(engine) as session:
            assert task_counts.total(session, kind="import") == 1
            assert task_counts.total(session, embedding_model_id="ma") == 1
    finally:
        engine.dispose()
