"""Judged evaluation sets: created whole, validated before anything is written, never changed.

A set is the ground truth a run is judged on, so a bad judgement must be refused, not stored:
every object id has to name a catalogue item, each query needs an item judged relevant, and
ids are unique where they would otherwise silently overwrite each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from embtune.domain.evaluation_sets import (
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    EvaluationSet,
    JudgedSet,
)
from embtune.errors import NotFound
from embtune.schemas.evaluation_sets import MAX_GRADE, MAX_JUDGEMENTS, MAX_QUERIES
from embtune.services.field_errors import field_error, raise_invalid, too_many
from embtune.storage.db import Database, utcnow
from embtune.storage.evalsets_repo import EvaluationSetRepository
from embtune.storage.ids import new_id

# Field errors one refusal lists: enough to fix a file by, small enough to read (and to send).
MAX_ERRORS = 20
_NAME = re.compile(NAME_PATTERN)


class _Errors(list[dict[str, Any]]):
    """Field errors, keeping the first `MAX_ERRORS`."""

    def add(self, loc: Sequence[str | int], msg: str, kind: str = "value_error") -> None:
        if len(self) < MAX_ERRORS:
            self.append(field_error(loc, msg, kind))


class EvaluationSetService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.repo = EvaluationSetRepository()

    def create(
        self, name: str, description: str | None, queries: Sequence[Mapping[str, Any]]
    ) -> EvaluationSet:
        """Store the set whole; 422 naming every bad field (the first few), 409 if the name is
        taken. Queries are `{query_id, text, relevant: [{object_id, grade=1}]}`."""
        query_rows, judgements = _validated(name, queries)
        with self.db.read() as session:
            known = self.repo.known_object_ids(session, (oid for _, oid, _ in judgements))
        errors = _Errors()
        for index, query in enumerate(queries):
            for position, judged in enumerate(query["relevant"]):
                if judged["object_id"] not in known:
                    errors.add(
                        ["queries", index, "relevant", position, "object_id"],
                        f"unknown item {judged['object_id']!r}: not in the catalogue "
                        "(POST /api/v1/items first)",
                    )
        raise_invalid(errors)
        with self.db.transaction() as session:
            return self.repo.insert(
                session,
                set_id=new_id(),
                name=name,
                description=description,
                queries=query_rows,
                judgements=judgements,
                now=utcnow(),
            )

    def get(self, id_or_name: str) -> EvaluationSet:
        with self.db.read() as session:
            found = self.repo.find(session, id_or_name)
        if found is None:
            raise NotFound(f"evaluation set {id_or_name!r} not found")
        return found

    def resolve_id(self, id_or_name: str) -> str:
        return self.get(id_or_name).id

    def page(self, *, offset: int, limit: int) -> tuple[list[EvaluationSet], int]:
        with self.db.read() as session:
            return self.repo.page(session, offset=offset, limit=limit)

    def queries_page(
        self, id_or_name: str, *, offset: int, limit: int
    ) -> tuple[list[tuple[str, str, dict[str, int]]], int]:
        """A page of (query_id, text, grades) in posted order, and the set's query count."""
        with self.db.read() as session:
            header = self.repo.find(session, id_or_name)
            if header is None:
                raise NotFound(f"evaluation set {id_or_name!r} not found")
            page = self.repo.queries_page(session, header.id, offset=offset, limit=limit)
        return page, header.queries_count

    def judged(self, id_or_name: str) -> JudgedSet:
        """The queries and grades a run is judged on, read in one transaction."""
        with self.db.read() as session:
            header = self.repo.find(session, id_or_name)
            if header is None:
                raise NotFound(f"evaluation set {id_or_name!r} not found")
            return self.repo.judged(session, header)


def _validated(
    name: str, queries: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    """(query_id, text) rows and (query_id, object_id, grade) rows, or a 422 naming the
    fields: everything that needs no database, in one pass."""
    errors = _Errors()
    if len(name) > NAME_MAX_LENGTH:
        errors.add(["name"], f"String should have at most {NAME_MAX_LENGTH} characters",
                   "string_too_long")
    elif not _NAME.fullmatch(name):  # `$` alone would let a trailing newline through
        errors.add(["name"], f"String should match pattern '{NAME_PATTERN}'",
                   "string_pattern_mismatch")
    if not queries:
        errors.add(["queries"], "List should have at least 1 item after validation, not 0",
                   "too_short")
    elif len(queries) > MAX_QUERIES:
        errors.append(too_many(["queries"], MAX_QUERIES, len(queries)))
    total = sum(len(query["relevant"]) for query in queries)
    if total > MAX_JUDGEMENTS:
        errors.add(["queries"], f"at most {MAX_JUDGEMENTS} judged items in all, not {total}",
                   "too_long")
    raise_invalid(errors)  # a body too large is not worth reading further

    query_rows: list[tuple[str, str]] = []
    judgements: list[tuple[str, str, int]] = []
    seen_queries: set[str] = set()
    for index, query in enumerate(queries):
        query_id = query["query_id"]
        if query_id in seen_queries:
            errors.add(["queries", index, "query_id"],
                       f"duplicate query_id {query_id!r} in this set")
        seen_queries.add(query_id)
        query_rows.append((query_id, query["text"]))
        seen_items: set[str] = set()
        relevant = 0
        for position, judged in enumerate(query["relevant"]):
            object_id, grade = judged["object_id"], judged.get("grade", 1)
            loc = ["queries", index, "relevant", position]
            if object_id in seen_items:
                errors.add([*loc, "object_id"],
                           f"duplicate object_id {object_id!r} in query {query_id!r}")
            seen_items.add(object_id)
            if not isinstance(grade, int) or isinstance(grade, bool) or not (
                0 <= grade <= MAX_GRADE
            ):
                errors.add([*loc, "grade"], f"grade should be an integer from 0 to {MAX_GRADE}")
                continue
            if grade > 0:
                relevant += 1
            judgements.append((query_id, object_id, grade))
        if not relevant:
            errors.add(["queries", index, "relevant"],
                       f"query {query_id!r} has no item with a grade above 0: nothing to "
                       "find, so it cannot score a model")
    raise_invalid(errors)
    return query_rows, judgements
