"""Set-based catalogue writes for bulk item ingestion (`services.items_bulk`).

An item stored again is no longer deleted: its tombstone (left by a delete, so sessions that
showed it are skipped by training) goes in the same transaction as the upsert.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import ItemRow, ItemTombstoneRow
from embtune.storage.upsert import dialect_name, insert_on_conflict

ITEMS = ItemRow.__table__


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), ID_CHUNK):
        yield ordered[start : start + ID_CHUNK]


class ItemsBulkRepository:
    """Stateless; every method works inside the caller's transaction."""

    def contents(
        self, session: Session, object_ids: Iterable[str]
    ) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """(text, meta) of the stored items among `object_ids`."""
        found: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for chunk in _chunks(object_ids):
            for object_id, text, meta in session.execute(
                select(ItemRow.object_id, ItemRow.text, ItemRow.meta).where(
                    ItemRow.object_id.in_(chunk)
                )
            ).tuples():
                found[object_id] = (text, meta)
        return found

    def upsert(self, session: Session, items: Sequence[dict[str, Any]], now: datetime) -> None:
        """Insert or overwrite these items (unique ids), executemany over insertmanyvalues;
        `created_at` is kept on an update."""
        if not items:
            return
        stmt = insert_on_conflict(dialect_name(session), ITEMS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ITEMS.c.object_id],
            set_={
                "text": stmt.excluded.text,
                "meta": stmt.excluded.meta,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        session.execute(
            stmt,
            [
                {
                    "object_id": item["object_id"],
                    "text": item["text"],
                    "meta": item.get("meta"),
                    "created_at": now,
                    "updated_at": now,
                }
                for item in items
            ],
        )

    def remove_tombstones(self, session: Session, object_ids: Iterable[str]) -> None:
        """These items exist again: training no longer skips them."""
        for chunk in _chunks(object_ids):
            session.execute(delete(ItemTombstoneRow).where(ItemTombstoneRow.object_id.in_(chunk)))
