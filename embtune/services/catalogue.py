"""Catalogue use cases: the searchable items that sessions show and training reads.

Every write owns one transaction, so a rejected request stores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embtune.config import Settings
from embtune.domain.clickstream import Item, UpsertCounts
from embtune.errors import NotFound
from embtune.services.field_errors import field_error, raise_invalid, too_long_text
from embtune.storage.db import Database, utcnow
from embtune.storage.items_repo import ItemRepository


class CatalogueService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.items = ItemRepository()

    def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> UpsertCounts:
        """Insert new items, overwrite known ones; all of the list or none of it."""
        limit = self.settings.max_item_text_length
        errors = [
            too_long_text(["items", index, "text"], limit)
            for index, item in enumerate(items)
            if len(item["text"]) > limit
        ]
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item["object_id"] in seen:
                errors.append(
                    field_error(
                        ["items", index, "object_id"],
                        f"duplicate object_id {item['object_id']!r} in this request",
                        "value_error",
                    )
                )
            seen.add(item["object_id"])
        raise_invalid(errors)
        with self.db.transaction() as session:
            return self.items.upsert(session, [dict(item) for item in items], utcnow())

    def delete_items(self, object_ids: Sequence[str]) -> int:
        """Remove items from the catalogue (the next incremental reindex removes them from its
        sink); how many existed. Each leaves a tombstone in the same transaction, so training
        skips the sessions' results that name it and says how many it skipped as deleted."""
        with self.db.transaction() as session:
            return self.items.delete(session, object_ids, utcnow())

    def delete_item(self, object_id: str) -> None:
        if self.delete_items([object_id]) == 0:
            raise NotFound(f"item {object_id!r} not found")

    def item(self, object_id: str) -> Item:
        with self.db.read() as session:
            item = self.items.get(session, object_id)
        if item is None:
            raise NotFound(f"item {object_id!r} not found")
        return item

    def items_page(self, *, offset: int, limit: int) -> tuple[list[Item], int]:
        with self.db.read() as session:
            return self.items.page(session, offset=offset, limit=limit)
