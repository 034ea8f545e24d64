"""Aliases under concurrent writers, on real databases: two connections (or two API servers)
moving one alias many times leave one consistent history — versions 1..N without a gap, each
change starting where the one before ended, the alias row equal to the newest change, and every
change a writer was told it made recorded exactly once. And a change made inside a transaction
that rolls back leaves nothing (the task runner promotes in the transaction that finishes its
task)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import pairwise

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from embtune.domain.aliases import AliasAction, AliasChange
from embtune.errors import Conflict
from embtune.storage import migrate
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database, make_engine, utcnow
from embtune.storage.ids import new_id
from embtune.storage.models_repo import ModelRepository
from tests.conftest import register_model
from tests.support.backends import Backend

DATABASES = pytest.mark.backends("sqlite-embedded", "postgres-redis")  # the broker plays no part
ROUNDS = 150  # changes each writer attempts
ALIASES = "/api/v1/aliases"


@pytest.fixture
def databases(backend: Backend) -> Iterator[tuple[Database, Database]]:
    """Two engines on one migrated database: two pools, so two real connections."""
    with ExitStack() as stack:
        dbs = []
        for _ in range(2):
            db = Database(make_engine(backend.database_url))
            stack.callback(db.dispose)
            dbs.append(db)
        migrate.upgrade(dbs[0].engine)
        yield dbs[0], dbs[1]


def add_models(db: Database, count: int) -> list[str]:
    ids = [new_id() for _ in range(count)]
    with db.transaction() as session:
        for i, model_id in enumerate(ids):
            ModelRepository().insert(session, {
                "id": model_id, "name": f"m{i}", "plugin_name": "sleepy",
                "source": "builtin:all-MiniLM-L6-v2", "parent_id": None, "task_id": None,
                "metrics": None, "created_at": utcnow(),
            })
    return ids


def assert_consistent(db: Database, name: str) -> list[AliasChange]:
    """The history's invariants; returns it oldest first."""
    repo = AliasRepository()
    with db.read() as session:
        alias = repo.get(session, name)
        history = list(reversed(repo.history(session, name, limit=1_000_000)))
    assert alias is not None
    assert [c.version for c in history] == list(range(1, len(history) + 1))
    assert history[0].previous_model_id is None
    for before, after in pairwise(history):
        assert after.previous_model_id == before.model_id, after
        assert after.model_id != before.model_id, after  # a change that changed nothing: none
    assert (alias.model_id, alias.version) == (history[-1].model_id, history[-1].version)
    assert alias.updated_by == history[-1].actor
    return history


@DATABASES
def test_two_connections_moving_one_alias_keep_one_history(
    databases: tuple[Database, Database],
) -> None:
    models = add_models(databases[0], 3)
    repo = AliasRepository()
    start = threading.Barrier(2)

    def writer(index: int) -> tuple[list[str], int]:
        """Point the alias `ROUNDS` times; the actors of the changes this writer made."""
        db = databases[index]
        mine: list[str] = []
        conflicts = 0
        start.wait()  # both begin with the first insert: one of them must lose the name
        for round_ in range(ROUNDS):
            actor = f"writer{index}-{round_}"
            target = models[(index + round_) % len(models)]
            try:
                with db.transaction() as session:
                    change = repo.point(session, "production", target,
                                        action=AliasAction.set, actor=actor)
            except Conflict:
                conflicts += 1  # kept losing to the other writer: retryable, nothing written
                continue
            assert change.model_id == target
            if change.actor == actor:  # else it already pointed there: no change to make
                mine.append(actor)
        return mine, conflicts

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(writer, [0, 1]))
    history = assert_consistent(databases[0], "production")
    made = [actor for mine, _ in results for actor in mine]
    assert sorted(c.actor for c in history) == sorted(made)  # each told change, exactly once
    assert sum(conflicts for _, conflicts in results) <= ROUNDS // 10
    assert len(history) > ROUNDS  # both writers changed it, many times


@DATABASES
def test_concurrent_first_inserts_make_one_alias(databases: tuple[Database, Database]) -> None:
    models = add_models(databases[0], 2)
    repo = AliasRepository()
    names = [f"fresh-{i}" for i in range(20)]
    start = threading.Barrier(2)

    def writer(index: int) -> None:
        for name in names:
            start.wait()
            with databases[index].transaction() as session:
                repo.point(session, name, models[index], action=AliasAction.set,
                           actor=f"writer{index}")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(writer, [0, 1]))
    for name in names:
        history = assert_consistent(databases[0], name)
        assert len(history) == 2 and {c.model_id for c in history} == set(models)


@DATABASES
def test_a_change_in_a_transaction_that_rolls_back_leaves_nothing(
    databases: tuple[Database, Database],
) -> None:
    db = databases[0]
    first, second = add_models(db, 2)
    repo = AliasRepository()

    class TaskFailed(Exception):
        pass

    with pytest.raises(TaskFailed), db.transaction() as session:
        repo.point(session, "production", first, action=AliasAction.promote, actor="task:t1")
        assert repo.get(session, "production") is not None  # visible inside, until rollback
        raise TaskFailed
    with db.read() as session:
        assert repo.get(session, "production") is None
        assert repo.history(session, "production") == []

    with db.transaction() as session:
        repo.point(session, "production", first, action=AliasAction.set, actor="api")
    with pytest.raises(TaskFailed), db.transaction() as session:
        repo.point(session, "production", second, action=AliasAction.promote, actor="task:t2")
        raise TaskFailed
    history = assert_consistent(db, "production")
    assert [(c.version, c.model_id) for c in history] == [(1, first)]


@DATABASES
def test_a_lost_first_insert_leaves_the_callers_transaction_usable(
    databases: tuple[Database, Database],
) -> None:
    """The loser of the name goes on in its own transaction (a savepoint took the failed
    insert), so what the caller wrote before the change still commits with it."""
    first, second = add_models(databases[0], 2)
    repo = AliasRepository()
    inserted = threading.Event()
    winner_may_commit = threading.Event()

    def winner() -> None:
        with databases[0].transaction() as session:
            repo.point(session, "production", first, action=AliasAction.set, actor="winner")
            inserted.set()
            winner_may_commit.wait(10)

    thread = threading.Thread(target=winner)
    thread.start()
    try:
        assert inserted.wait(10)
        if databases[1].dialect == "postgresql":
            # PostgreSQL: the loser's insert waits on the winner's uncommitted key
            threading.Timer(0.3, winner_may_commit.set).start()
        else:
            winner_may_commit.set()  # SQLite: the loser's BEGIN IMMEDIATE waits instead
        with databases[1].transaction() as session:
            earlier = add_models_in(session)
            change = repo.point(session, "production", second, action=AliasAction.promote,
                                actor="loser")
    finally:
        winner_may_commit.set()
        thread.join()
    assert (change.version, change.previous_model_id) == (2, first)
    with databases[0].read() as session:
        assert ModelRepository().get(session, earlier) is not None
    assert [c.actor for c in assert_consistent(databases[0], "production")] == ["winner", "loser"]


def add_models_in(session: Session) -> str:
    model_id = new_id()
    ModelRepository().insert(session, {
        "id": model_id, "name": "written before the change", "plugin_name": "sleepy",
        "source": "builtin:all-MiniLM-L6-v2", "parent_id": None, "task_id": None,
        "metrics": None, "created_at": utcnow(),
    })
    return model_id


def test_two_api_servers_moving_one_alias_keep_one_history(
    client_factory: Callable[..., TestClient],
) -> None:
    servers = [client_factory(run_worker=False), client_factory(run_worker=False)]
    models = [register_model(servers[0], name=f"m{i}") for i in range(3)]
    start = threading.Barrier(2)

    def writer(index: int) -> int:
        start.wait()
        failures = 0
        for round_ in range(ROUNDS // 3):
            response = servers[index].put(f"{ALIASES}/production", json={
                "model_id": models[(index + round_) % len(models)],
                "reason": f"writer{index}-{round_}"})
            if response.status_code == 409:
                failures += 1
            else:
                assert response.status_code == 200, response.text
        return failures

    with ThreadPoolExecutor(2) as pool:
        failures = sum(pool.map(writer, [0, 1]))
    assert failures <= ROUNDS // 10
    shown = servers[1].get(f"{ALIASES}/production").json()
    history = assert_consistent(servers[0].app.state.runtime.db, "production")  # type: ignore
    assert shown["version"] == len(history) and shown["model_id"] == history[-1].model_id
    assert [c["version"] for c in shown["history"]] == list(range(len(history), 0, -1))[:20]
