"""Judged evaluation sets: one header row, its queries and its judgements, written once.

A set is stored whole in the caller's transaction or not at all, and never updated afterwards:
a corrected set is a new set under a new name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Table, bindparam, func, insert, select
from sqlalchemy.orm import Session

from embtune.domain.evaluation_sets import EvaluationSet, JudgedSet
from embtune.errors import Conflict
from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import (
    EvaluationJudgementRow,
    EvaluationQueryRow,
    EvaluationSetRow,
    ItemRow,
)
from embtune.storage.upsert import dialect_name, insert_on_conflict

# Rows per statement: bounds what one statement holds in memory and sends.
ROW_CHUNK = 10_000
QUERIES: Table = EvaluationQueryRow.__table__  # type: ignore[assignment]
JUDGEMENTS: Table = EvaluationJudgementRow.__table__  # type: ignore[assignment]


def _to_set(row: EvaluationSetRow) -> EvaluationSet:
    return EvaluationSet(
        id=row.id,
        name=row.name,
        description=row.description,
        queries_count=row.queries_count,
        judgements_count=row.judgements_count,
        created_at=row.created_at,
    )


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Many rows, fast on both databases, a chunk per statement.

    SQLite: an executemany, one compiled statement stepped once per row in the driver, with no
    bound-parameter limit. PostgreSQL: psycopg would send an executemany as one statement per
    row, so each chunk goes as one `INSERT … SELECT FROM unnest(array, …)` with an array
    parameter per column instead."""
    if dialect_name(session) != "postgresql":
        for chunk in _chunks(rows, ROW_CHUNK):
            session.execute(insert(table), [dict(zip(columns, row, strict=True))
                                            for row in chunk])
        return
    for chunk in _chunks(rows, ROW_CHUNK):
        arrays = [
            bindparam(f"c{index}", [row[index] for row in chunk], type_=ARRAY(table.c[name].type))
            for index, name in enumerate(columns)
        ]
        source = func.unnest(*arrays).table_valued(*columns).render_derived()
        session.execute(insert(table).from_select(list(columns), select(*source.c)))


class EvaluationSetRepository:
    """Stateless; every method works inside the caller's transaction."""

    def insert(
        self,
        session: Session,
        *,
        set_id: str,
        name: str,
        description: str | None,
        queries: Sequence[tuple[str, str]],
        judgements: Sequence[tuple[str, str, int]],
        now: datetime,
    ) -> EvaluationSet:
        """Header, then queries (`(query_id, text)` in posted order), then judgements
        (`(query_id, object_id, grade)`).

        The header goes first with `ON CONFLICT (name) DO NOTHING`, so a taken name is found
        before a single query is written, without an exception that would abort the
        transaction on PostgreSQL; a concurrent writer of the same name is waited for by the
        database's unique index, so only one of two can ever store it."""
        header = (
            insert_on_conflict(dialect_name(session), EvaluationSetRow)
            .values(
                id=set_id,
                name=name,
                description=description,
                queries_count=len(queries),
                judgements_count=len(judgements),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(EvaluationSetRow.id)
        )
        if session.execute(header).scalar() is None:
            existing = self.by_name(session, name)
            held_by = f" (id {existing.id})" if existing else ""
            raise Conflict(f"evaluation set name {name!r} exists{held_by}")
        _insert_rows(
            session, QUERIES, ("set_id", "query_id", "position", "text"),
            [(set_id, query_id, position, text) for position, (query_id, text)
             in enumerate(queries)],
        )
        _insert_rows(
            session, JUDGEMENTS, ("set_id", "query_id", "object_id", "grade"),
            [(set_id, query_id, object_id, grade) for query_id, object_id, grade in judgements],
        )
        row = session.get(EvaluationSetRow, set_id)
        assert row is not None
        return _to_set(row)

    def get(self, session: Session, set_id: str) -> EvaluationSet | None:
        row = session.get(EvaluationSetRow, set_id)
        return _to_set(row) if row else None

    def by_name(self, session: Session, name: str) -> EvaluationSet | None:
        row = session.scalars(
            select(EvaluationSetRow).where(EvaluationSetRow.name == name)
        ).one_or_none()
        return _to_set(row) if row else None

    def find(self, session: Session, id_or_name: str) -> EvaluationSet | None:
        """By id first, then by name: an id is what the API hands out, a name what people
        type."""
        return self.get(session, id_or_name) or self.by_name(session, id_or_name)

    def page(
        self, session: Session, *, offset: int, limit: int
    ) -> tuple[list[EvaluationSet], int]:
        rows = session.scalars(
            select(EvaluationSetRow)
            .order_by(EvaluationSetRow.created_at.desc(), EvaluationSetRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(EvaluationSetRow)) or 0
        return [_to_set(r) for r in rows], total

    def judged(self, session: Session, header: EvaluationSet) -> JudgedSet:
        """Query texts in posted order and, per query, its judged items (best grade first)."""
        queries = dict(
            session.execute(
                select(EvaluationQueryRow.query_id, EvaluationQueryRow.text)
                .where(EvaluationQueryRow.set_id == header.id)
                .order_by(EvaluationQueryRow.position)
            ).tuples().all()
        )
        grades: dict[str, dict[str, int]] = {query_id: {} for query_id in queries}
        judgements = session.execute(
            select(
                EvaluationJudgementRow.query_id,
                EvaluationJudgementRow.object_id,
                EvaluationJudgementRow.grade,
            )
            .where(EvaluationJudgementRow.set_id == header.id)
            .order_by(
                EvaluationJudgementRow.query_id,
                EvaluationJudgementRow.grade.desc(),
                EvaluationJudgementRow.object_id,
            )
            .execution_options(yield_per=10_000)
        ).tuples()
        for query_id, object_id, grade in judgements:
            grades[query_id][object_id] = grade
        return JudgedSet(id=header.id, name=header.name, queries=queries, grades=grades)

    def queries_page(
        self, session: Session, set_id: str, *, offset: int, limit: int
    ) -> list[tuple[str, str, dict[str, int]]]:
        """(query_id, text, grades) for a page of queries in posted order (best grade first)."""
        queries = session.execute(
            select(EvaluationQueryRow.query_id, EvaluationQueryRow.text)
            .where(EvaluationQueryRow.set_id == set_id)
            .order_by(EvaluationQueryRow.position)
            .offset(offset)
            .limit(limit)
        ).tuples().all()
        grades: dict[str, dict[str, int]] = {query_id: {} for query_id, _ in queries}
        for chunk in _chunks(list(grades), ID_CHUNK):
            judgements = session.execute(
                select(
                    EvaluationJudgementRow.query_id,
                    EvaluationJudgementRow.object_id,
                    EvaluationJudgementRow.grade,
                )
                .where(
                    EvaluationJudgementRow.set_id == set_id,
                    EvaluationJudgementRow.query_id.in_(chunk),
                )
                .order_by(EvaluationJudgementRow.grade.desc(), EvaluationJudgementRow.object_id)
            ).tuples()
            for query_id, object_id, grade in judgements:
                grades[query_id][object_id] = grade
        return [(query_id, text, grades[query_id]) for query_id, text in queries]

    def known_object_ids(self, session: Session, object_ids: Iterable[str]) -> set[str]:
        """The catalogue items among `object_ids`, asked a chunk of ids per query."""
        wanted = sorted(set(object_ids))
        known: set[str] = set()
        for chunk in _chunks(wanted, ID_CHUNK):
            known.update(
                session.scalars(select(ItemRow.object_id).where(ItemRow.object_id.in_(chunk)))
            )
        return known
