"""Bulk catalogue ingestion: many items in one transaction, one outcome per row (import
tasks of kind `items`).

Unlike `POST /api/v1/items` (all of the list or none of it), a bad row is `rejected` on its own
and the others are stored. An item whose text and meta are already stored is a `duplicate` and
is not written (its `updated_at` stays); a new or changed one is `accepted`. An id given twice
in one call is stored as its last row says, as a file read top to bottom would leave it. An
item stored again loses its tombstone (left by a delete) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session as DbSession

from embtune.config import Settings
from embtune.schemas.clickstream_bulk import ITEM_ROW
from embtune.services.clickstream_bulk import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    Prepared,
    RowOutcome,
    in_row,
    refused,
    row_key,
    validation_errors,
)
from embtune.services.field_errors import too_long_text
from embtune.storage.db import Database
from embtune.storage.items_bulk_repo import ItemsBulkRepository
from embtune.storage.items_repo import ItemRepository


class ItemsBulk:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.items = ItemsBulkRepository()
        self.catalogue = ItemRepository()

    def ingest_in(
        self, session: DbSession, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> list[RowOutcome]:
        """Store the valid rows inside the caller's transaction; an outcome per row, in order."""
        return self.store_in(session, self.prepare(rows, now), now)

    def prepare(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> Prepared:
        """Every row checked on its own (no database; safe on another thread)."""
        outcomes: dict[int, RowOutcome] = {}
        valid: dict[int, dict[str, Any]] = {}
        limit = self.settings.max_item_text_length
        for index, raw in enumerate(rows):
            key = row_key(raw, "object_id")
            try:
                item = ITEM_ROW.validate_python(raw).model_dump()
            except ValidationError as exc:
                outcomes[index] = refused(index, key, REJECTED, validation_errors(exc))
                continue
            if len(item["text"]) > limit:
                outcomes[index] = refused(
                    index, key, REJECTED, in_row([too_long_text(["text"], limit)])
                )
                continue
            valid[index] = item
        return Prepared(len(rows), outcomes, valid)

    def store_in(self, session: DbSession, prepared: Prepared, now: datetime) -> list[RowOutcome]:
        """The prepared rows' valid ones stored in the caller's transaction; every outcome."""
        outcomes = dict(prepared.refused)
        valid: dict[int, dict[str, Any]] = prepared.valid
        last = {item["object_id"]: index for index, item in valid.items()}
        stored = self.items.contents(session, last)
        changed = []
        for object_id, index in last.items():
            item = valid[index]
            if stored.get(object_id) != (item["text"], item["meta"]):
                changed.append(item)
        self.items.upsert(session, changed, now)
        # an item stored again is no longer deleted: training stops skipping it
        self.catalogue.remove_tombstones(session, [item["object_id"] for item in changed])
        writes = {item["object_id"] for item in changed}
        for index, item in valid.items():
            object_id = item["object_id"]
            status = ACCEPTED if object_id in writes else DUPLICATE
            outcomes[index] = RowOutcome(index, object_id, status)
        return [outcomes[index] for index in range(prepared.size)]
