"""Aliases and their change history: every change is a compare-and-set on the alias's version.

`point` reads the alias's version, then `UPDATE aliases … WHERE name = :name AND version =
:read` and writes the change row with the new version, all in the caller's transaction (the
task runner promotes in the transaction that marks its task done: both commit or neither).
Zero rows updated means another writer changed the alias in between; `UNIQUE(alias, version)`
on the history is the backstop that makes a lost race impossible to record twice.

Reads select columns, never ORM entities: the session's identity map would hand back the row as
this transaction first saw it, and a retry after a lost race must see the winner's version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, null, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from embtune.domain.aliases import Alias, AliasAction, AliasChange
from embtune.errors import Conflict, NotFound
from embtune.storage.db import utcnow
from embtune.storage.tables import AliasChangeRow, AliasRow
from embtune.storage.webhooks_repo import announce_alias

ALIASES = AliasRow.__table__
CHANGES = AliasChangeRow.__table__
# Lost compare-and-sets `point` retries before it gives up with a Conflict: each loss means
# another writer committed a change, so running out takes a burst of writers on one alias.
POINT_ATTEMPTS = 5


def _to_alias(row: Row) -> Alias:
    return Alias(
        name=row.name,
        model_id=row.model_id,
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        sink=getattr(row, "sink", None),
    )


def _to_change(row: Row) -> AliasChange:
    return AliasChange(
        alias=row.alias,
        version=row.version,
        action=AliasAction(row.action),
        model_id=row.model_id,
        previous_model_id=row.previous_model_id,
        actor=row.actor,
        reason=row.reason,
        created_at=row.created_at,
    )


class AliasRepository:
    """Stateless; every method works inside the caller's transaction."""

    def model_id_locked(self, session: Session, name: str) -> str | None:
        """Where the alias points, with its row locked (PostgreSQL) until the caller's
        transaction ends, so a move cannot land between this read and what it decides."""
        return session.scalar(
            select(AliasRow.model_id).where(AliasRow.name == name).with_for_update()
        )

    def get(self, session: Session, name: str) -> Alias | None:
        row = session.execute(select(ALIASES).where(ALIASES.c.name == name)).first()
        return _to_alias(row) if row else None

    def page(self, session: Session, *, offset: int, limit: int) -> tuple[list[Alias], int]:
        """By name: aliases are few and read like a directory."""
        rows = session.execute(
            select(ALIASES).order_by(ALIASES.c.name).offset(offset).limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(ALIASES)) or 0
        return [_to_alias(r) for r in rows], total

    def history(
        self, session: Session, name: str, limit: int = 20, *, up_to: int | None = None
    ) -> list[AliasChange]:
        """The newest `limit` changes, newest first; `up_to` stops at that version, so an alias
        read a moment earlier and its history agree (on PostgreSQL each statement sees the
        changes committed before it)."""
        where = [CHANGES.c.alias == name]
        if up_to is not None:
            where.append(CHANGES.c.version <= up_to)
        rows = session.execute(
            select(CHANGES)
            .where(*where)
            .order_by(CHANGES.c.version.desc())
            .limit(limit)
        ).all()
        return [_to_change(r) for r in rows]

    def point(
        self,
        session: Session,
        name: str,
        model_id: str,
        *,
        action: AliasAction,
        actor: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> AliasChange:
        """Point the alias at `model_id` (creating it at version 1), recording the change.

        Pointing it at the model it already points at changes nothing and returns the newest
        change: a PUT retried after a lost answer must not add history or fail its own
        `expected_version`, and rollback's undo stack never holds a step that changed nothing.
        Otherwise `expected_version` (0: the alias must not exist yet) makes a lost race a
        Conflict; without it, a lost race is re-read and retried (the last writer wins).
        The caller checks that the model exists."""
        change, _ = self.move(
            session, name, model_id, action=action, actor=actor, reason=reason,
            expected_version=expected_version,
        )
        return change

    def move(
        self,
        session: Session,
        name: str,
        model_id: str,
        *,
        action: AliasAction,
        actor: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> tuple[AliasChange, bool]:
        """`point`, also saying whether the alias moved (False: it already pointed there). A
        caller that reindexes the alias's sink on a move must not reindex on a retried PUT."""
        for _ in range(POINT_ATTEMPTS):
            current = self.get(session, name)
            if current is not None and current.model_id == model_id:
                return self._change_at(session, name, current.version), False
            found = current.version if current is not None else 0
            if expected_version is not None and expected_version != found:
                raise Conflict(
                    f"alias {name!r} is at version {found}, not the expected {expected_version}"
                )
            if current is None:
                change = self._create(session, name, model_id, action, actor, reason)
            else:
                change = self._advance(session, current, model_id, action, actor, reason)
            if change is not None:
                return change, True
            if expected_version is not None:
                raise Conflict(f"alias {name!r} was changed meanwhile; read it and try again")
        raise Conflict(f"alias {name!r} kept changing under this request; try again")

    def set_sink(
        self, session: Session, name: str, sink: dict[str, Any] | None
    ) -> tuple[Alias, Alias]:
        """Name the sink the alias serves from (None: none); the alias before and after.

        Not a change of the alias (no version, no history: where it points is what the history
        is about), but a compare-and-set on the version all the same: a sink set while a
        promotion moves the alias must see the model the alias ends on, so that one of the two
        transactions reindexes that model (the promotion reads the sink after its own update,
        which waits for this one)."""
        for _ in range(POINT_ATTEMPTS):
            current = self.get(session, name)
            if current is None:
                raise NotFound(f"alias {name!r} not found")
            result = session.execute(
                update(AliasRow)
                .where(AliasRow.name == name, AliasRow.version == current.version)
                .values(sink=null() if sink is None else sink)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                return current, replace(current, sink=sink)
        raise Conflict(f"alias {name!r} kept changing under this request; try again")

    def rollback(
        self,
        session: Session,
        name: str,
        *,
        actor: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> AliasChange:
        """Point the alias back at the model before its live change (`rollback_target`).

        Never retried: a rollback is relative to the state it was asked about, and retrying
        after a concurrent change would undo that change instead of the one the caller saw
        (two people pressing "roll back" at once must not undo two changes). Conflict when
        there is nothing to undo or the alias changed meanwhile."""
        current = self.get(session, name)
        if current is None:
            raise NotFound(f"alias {name!r} not found")
        if expected_version is not None and expected_version != current.version:
            raise Conflict(
                f"alias {name!r} is at version {current.version}, "
                f"not the expected {expected_version}"
            )
        target = self.rollback_target(session, name)
        if target is None:
            raise Conflict(f"alias {name!r} has no earlier model to roll back to")
        return self.point(
            session, name, target, action=AliasAction.rollback, actor=actor, reason=reason,
            expected_version=current.version,
        )

    def rollback_target(self, session: Session, name: str) -> str | None:
        """The model a rollback goes back to, or None when there is nothing to undo.

        History is an undo stack: `set` and `promote` push, `rollback` pops. Walking it newest
        first, every rollback cancels the next push not yet cancelled; the first push left is
        the live one, and the model before it (its `previous_model_id`) is where a rollback
        goes. So repeated rollbacks walk further back, and a `set` after a rollback starts a
        new top of the stack."""
        undone = 0
        for action, previous in self._actions_newest_first(session, name):
            if action is AliasAction.rollback:
                undone += 1
            elif undone:
                undone -= 1
            else:
                return previous
        return None

    def _actions_newest_first(
        self, session: Session, name: str
    ) -> Iterable[tuple[AliasAction, str | None]]:
        rows = session.execute(
            select(CHANGES.c.action, CHANGES.c.previous_model_id)
            .where(CHANGES.c.alias == name)
            .order_by(CHANGES.c.version.desc())
        )
        for action, previous in rows:
            yield AliasAction(action), previous

    def _change_at(self, session: Session, name: str, version: int) -> AliasChange:
        """The change that made `version`, by version: on PostgreSQL "the newest" read a moment
        after the alias may already be a later writer's change."""
        row = session.execute(
            select(CHANGES).where(CHANGES.c.alias == name, CHANGES.c.version == version)
        ).first()
        assert row is not None, f"alias {name!r} is at version {version} without its change"
        return _to_change(row)

    def _create(
        self,
        session: Session,
        name: str,
        model_id: str,
        action: AliasAction,
        actor: str,
        reason: str,
    ) -> AliasChange | None:
        """Insert the alias at version 1; None when a concurrent first insert won the name."""
        now = utcnow()
        try:
            # A savepoint: on PostgreSQL a failed statement would abort the caller's whole
            # transaction, and the caller (a task finishing) must be able to go on.
            with session.begin_nested():
                session.execute(
                    insert(AliasRow).values(
                        name=name, model_id=model_id, version=1, updated_at=now,
                        updated_by=actor,
                    )
                )
        except IntegrityError:
            if self.get(session, name) is None:
                raise  # not the name taken: a foreign key or another constraint
            return None
        return self._record(session, name, 1, action, model_id, None, actor, reason, now)

    def _advance(
        self,
        session: Session,
        current: Alias,
        model_id: str,
        action: AliasAction,
        actor: str,
        reason: str,
    ) -> AliasChange | None:
        """The compare-and-set from the version read; None when another writer got there
        first."""
        now = utcnow()
        version = current.version + 1
        result = session.execute(
            update(AliasRow)
            .where(AliasRow.name == current.name, AliasRow.version == current.version)
            .values(model_id=model_id, version=version, updated_at=now, updated_by=actor)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None
        return self._record(
            session, current.name, version, action, model_id, current.model_id, actor, reason,
            now,
        )

    @staticmethod
    def _record(
        session: Session,
        name: str,
        version: int,
        action: AliasAction,
        model_id: str,
        previous_model_id: str | None,
        actor: str,
        reason: str,
        at: datetime,
    ) -> AliasChange:
        values = {
            "alias": name,
            "version": version,
            "action": action.value,
            "model_id": model_id,
            "previous_model_id": previous_model_id,
            "actor": actor,
            "reason": reason,
            "created_at": at,
        }
        session.execute(insert(AliasChangeRow).values(**values))
        change = AliasChange(**{**values, "action": action})  # type: ignore[arg-type]
        announce_alias(session, change)  # the outbox: commits with the change
        return change
