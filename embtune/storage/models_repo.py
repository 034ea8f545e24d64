"""Embedding-model rows <-> domain objects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from embtune.domain.models import EmbeddingModel
from embtune.storage.tables import EmbeddingModelRow


def _to_model(row: EmbeddingModelRow) -> EmbeddingModel:
    return EmbeddingModel(
        id=row.id,
        name=row.name,
        plugin_name=row.plugin_name,
        source=row.source,
        parent_id=row.parent_id,
        task_id=row.task_id,
        metrics=row.metrics,
        created_at=row.created_at,
        evaluation_set_id=row.evaluation_set_id,
    )


class ModelRepository:
    def insert(self, session: Session, values: dict[str, Any]) -> EmbeddingModel:
        session.execute(insert(EmbeddingModelRow).values(**values))
        row = session.get(EmbeddingModelRow, values["id"])
        assert row is not None
        return _to_model(row)

    def get(self, session: Session, model_id: str) -> EmbeddingModel | None:
        row = session.get(EmbeddingModelRow, model_id)
        return _to_model(row) if row else None

    def set_evaluation_set(
        self, session: Session, model_id: str, set_id: str | None
    ) -> EmbeddingModel | None:
        """The model's default judged set (None: none); None if the model is unknown."""
        session.execute(
            update(EmbeddingModelRow)
            .where(EmbeddingModelRow.id == model_id)
            .values(evaluation_set_id=set_id)
        )
        row = session.get(EmbeddingModelRow, model_id, populate_existing=True)
        return _to_model(row) if row else None

    def page(
        self, session: Session, *, offset: int, limit: int
    ) -> tuple[list[EmbeddingModel], int]:
        rows = session.scalars(
            select(EmbeddingModelRow)
            .order_by(EmbeddingModelRow.created_at.desc(), EmbeddingModelRow.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = session.scalar(select(func.count()).select_from(EmbeddingModelRow)) or 0
        return [_to_model(r) for r in rows], total
