"""Catalogue rows <-> `Item`; bulk upserts and streamed text reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from embtune.domain.clickstream import Item, UpsertCounts
from embtune.storage.tables import ItemRow, ItemTombstoneRow, SearchSessionRow, SessionResultRow
from embtune.storage.upsert import dialect_name, insert_on_conflict

# Ids per `IN (…)` list: far below SQLite's and PostgreSQL's bound-parameter limits.
ID_CHUNK = 500


def _to_item(row: ItemRow) -> Item:
    return Item(
        object_id=row.object_id,
        text=row.text,
        meta=row.meta,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class ItemRepository:
    """Stateless; every method works inside the caller's transaction."""

    def upsert(
        self, session: Session, items: Sequence[dict[str, Any]], now: datetime
    ) -> UpsertCounts:
        """One `INSERT … ON CONFLICT (object_id) DO UPDATE` for the whole list.

        `created_at` is only written on insert, so a returned row whose `created_at` is this
        call's `now` was inserted by it; every other returned row was updated. This keeps the
        counts exact under concurrent upserts, where a read-then-write count would not be.
        Object ids must be unique within `items` (PostgreSQL refuses to update a row twice).
        """
        if not items:
            return UpsertCounts(0, 0)
        stmt = insert_on_conflict(dialect_name(session), ItemRow).values(
            [
                {
                    "object_id": item["object_id"],
                    "text": item["text"],
                    "meta": item.get("meta"),
                    "created_at": now,
                    "updated_at": now,
                }
                for item in items
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[ItemRow.object_id],
            set_={
                "text": stmt.excluded.text,
                "meta": stmt.excluded.meta,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        created = session.execute(stmt.returning(ItemRow.created_at)).scalars().all()
        inserted = sum(1 for created_at in created if created_at == now)
        self.remove_tombstones(session, [item["object_id"] for item in items])
        return UpsertCounts(inserted=inserted, updated=len(created) - inserted)

    def delete(self, session: Session, object_ids: Sequence[str], now: datetime) -> int:
        """Remove these items from the catalogue; how many existed. Sessions that showed them
        keep their results (the history of what users saw does not change), and each deleted
        item leaves a tombstone in the same transaction: training then counts the results it
        skips as deleted rather than as never catalogued."""
        deleted = 0
        for chunk in _chunks(sorted(set(object_ids)), ID_CHUNK):
            gone = session.scalars(
                delete(ItemRow).where(ItemRow.object_id.in_(chunk)).returning(ItemRow.object_id)
            ).all()
            deleted += len(gone)
            if gone:
                stmt = insert_on_conflict(dialect_name(session), ItemTombstoneRow).values(
                    [{"object_id": object_id, "deleted_at": now} for object_id in gone]
                )
                session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[ItemTombstoneRow.object_id],
                        set_={"deleted_at": stmt.excluded.deleted_at},
                    )
                )
        return deleted

    def remove_tombstones(self, session: Session, object_ids: Sequence[str]) -> None:
        """These items exist again: training no longer counts them as deleted."""
        for chunk in _chunks(sorted(set(object_ids)), ID_CHUNK):
            session.execute(delete(ItemTombstoneRow).where(ItemTombstoneRow.object_id.in_(chunk)))

    def deleted_shown_results(self, session: Session, batch_id: str) -> int:
        """How many shown results of the batch's sessions name a deleted item: one count."""
        return (
            session.scalar(
                select(func.count())
                .select_from(SessionResultRow)
                .join(SearchSessionRow, SearchSessionRow.session_id == SessionResultRow.session_id)
                .join(ItemTombstoneRow, ItemTombstoneRow.object_id == SessionResultRow.object_id)
                .where(SearchSessionRow.batch_id == batch_id)
            )
            or 0
        )

    def get(self, session: Session, object_id: str) -> Item | None:
        row = session.get(ItemRow, object_id)
        return _to_item(row) if row else None

    def page(self, session: Session, *, offset: int, limit: int) -> tuple[list[Item], int]:
        """Ordered by object id: the primary key, so pages are stable and cheap."""
        rows = session.scalars(
            select(ItemRow).order_by(ItemRow.object_id).offset(offset).limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(ItemRow)) or 0
        return [_to_item(r) for r in rows], total

    def texts(self, session: Session, object_ids: Iterable[str]) -> dict[str, str]:
        """Texts of the known ids among `object_ids`, fetched a chunk of ids per query."""
        wanted = sorted(set(object_ids))
        texts: dict[str, str] = {}
        for chunk in _chunks(wanted, ID_CHUNK):
            texts.update(
                session.execute(
                    select(ItemRow.object_id, ItemRow.text).where(ItemRow.object_id.in_(chunk))
                ).tuples().all()
            )
        return texts

    def all_texts(self, session: Session, chunk_size: int = 2000) -> Iterator[dict[str, str]]:
        """The whole catalogue in chunks; a server-side cursor on PostgreSQL, so memory holds
        one chunk of rows at a time besides what the caller keeps."""
        result = session.execute(
            select(ItemRow.object_id, ItemRow.text)
            .order_by(ItemRow.object_id)
            .execution_options(yield_per=chunk_size)
        )
        for partition in result.tuples().partitions():
            yield dict(partition)
