"""Set-based catalogue reads and writes for bulk item ingestion (`services.items_bulk`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from embtune.storage.items_repo import ID_CHUNK
from embtune.storage.tables import ItemRow
from embtune.storage.upsert import insert_rows

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
        """Insert or overwrite these items (unique ids) in one statement; `created_at` is
        kept on an update. In id order, so two such writes wait for each other rather than
        dead-lock."""
        insert_rows(
            session,
            ITEMS,
            [
                {
                    "object_id": item["object_id"],
                    "text": item["text"],
                    "meta": item.get("meta"),
                    "created_at": now,
                    "updated_at": now,
                }
                for item in sorted(items, key=lambda item: item["object_id"])  # in key order
            ],
            update_on_conflict=("text", "meta", "updated_at"),
        )
