"""One door into the state machine: creation is `Transition.create`, services build no SQL, the
event kinds are an enum with the stored values, and one helper picks `INSERT … ON CONFLICT`.

Read from the source with `ast` where the rule is about code, so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

import embtune
from embtune.domain.tasks import TaskEventKind, TaskStatus, Transition
from embtune.storage.tables import TaskCountRow
from embtune.storage.tasks_repo import TaskRepository
from embtune.storage.upsert import insert_on_conflict

ROOT = Path(embtune.__file__).parent
# typing a service's transaction is all a service may take from SQLAlchemy
ALLOWED_SQLALCHEMY = {("sqlalchemy.orm", "Session")}


def _sql_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "embtune.storage.tables":
                found += [f"{node.module}.{a.name}" for a in node.names]
            elif node.module.split(".")[0] == "sqlalchemy":
                found += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (node.module, a.name) not in ALLOWED_SQLALCHEMY
                ]
    return found


def test_services_import_no_tables_and_no_sql_expressions() -> None:
    found = {
        str(path.relative_to(ROOT)): names
        for path in sorted((ROOT / "services").rglob("*.py"))
        if (names := _sql_imports(path))
    }
    assert found == {}


def test_dialect_specific_inserts_are_only_built_by_the_helper() -> None:
    builders = [
        str(path.relative_to(ROOT))
        for path in sorted(ROOT.rglob("*.py"))
        if "migrations" not in path.parts
        and path.relative_to(ROOT) != Path("storage/upsert.py")
        and "sqlalchemy.dialects" in path.read_text()
    ]
    assert builders == []


def test_the_helper_builds_each_databases_upsert_and_names_an_unknown_one() -> None:
    table = TaskCountRow.__table__
    for name in ("postgresql", "sqlite"):
        stmt = insert_on_conflict(name, table).on_conflict_do_nothing()
        assert stmt.dialect_kwargs is not None and stmt.table is table
        assert type(stmt).__module__.startswith(f"sqlalchemy.dialects.{name}")
    with pytest.raises(ValueError, match="'oracle'"):
        insert_on_conflict("oracle", table)


def test_creation_is_the_create_transition_into_pending() -> None:
    assert Transition.create.sources == frozenset()
    assert Transition.create.target is TaskStatus.pending
    assert Transition.create.event_message == "created"
    assert not any(Transition.create.allows(s) for s in TaskStatus)


def test_other_transitions_name_their_events_after_themselves() -> None:
    assert Transition.cancel.event_message == "cancel"


def test_the_repository_refuses_a_status_from_the_caller_on_create() -> None:
    """The status of a new task is the transition's target: a caller cannot pick another."""
    with pytest.raises(ValueError, match=r"Transition\.create"):
        TaskRepository().create(Session(), {"id": "t", "status": TaskStatus.done.value})


def test_event_kinds_keep_their_stored_values() -> None:
    assert [k.value for k in TaskEventKind] == [
        "transition", "progress", "run", "verdict", "promotion", "switch", "warning"
    ]
    assert TaskEventKind("run") is TaskEventKind.run
