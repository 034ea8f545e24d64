"""The collections reindex tasks wrote into sinks: which is live, which are kept for rollback.

The sink itself holds the vectors and its alias; these rows are what the service knows of them,
written in the transactions that change a task (the switch is recorded in the one that marks
the reindex done).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from embtune.domain.sinks import COMPLETE, CollectionState, SinkCollection
from embtune.storage.db import utcnow
from embtune.storage.tables import SinkCollectionRow

ROW = SinkCollectionRow


def _to_collection(row: SinkCollectionRow) -> SinkCollection:
    return SinkCollection(
        sink_key=row.sink_key,
        collection=row.collection,
        sink_type=row.sink_type,
        sink=row.sink,
        model_id=row.model_id,
        task_id=row.task_id,
        state=CollectionState(row.state),
        items=row.items,
        dim=row.dim,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SinkCollectionRepository:
    def start(self, session: Session, values: dict[str, Any]) -> None:
        """Record a collection a run is about to write (state `writing`)."""
        now = utcnow()
        found = session.get(ROW, (values["sink_key"], values["collection"]))
        if found is not None:
            found.state = CollectionState.writing.value
            found.updated_at = now
            return
        session.execute(
            insert(ROW).values(
                **values, state=CollectionState.writing.value, items=0, dim=0,
                created_at=now, updated_at=now,
            )
        )

    def set_state(
        self,
        session: Session,
        sink_key: str,
        collection: str,
        state: CollectionState,
        **values: Any,
    ) -> None:
        session.execute(
            update(ROW)
            .where(ROW.sink_key == sink_key, ROW.collection == collection)
            .values(state=state.value, updated_at=utcnow(), **values)
        )

    def get(self, session: Session, sink_key: str, collection: str) -> SinkCollection | None:
        row = session.get(ROW, (sink_key, collection))
        return _to_collection(row) if row else None

    def live(self, session: Session, sink_key: str) -> SinkCollection | None:
        row = session.scalars(
            select(ROW).where(ROW.sink_key == sink_key, ROW.state == CollectionState.live.value)
        ).first()
        return _to_collection(row) if row else None

    def latest_complete(
        self, session: Session, sink_key: str, model_id: str
    ) -> SinkCollection | None:
        """The sink's last complete collection of this model (live, else the newest retired)."""
        rows = session.scalars(
            select(ROW)
            .where(
                ROW.sink_key == sink_key,
                ROW.model_id == model_id,
                ROW.state.in_([s.value for s in COMPLETE]),
            )
            .order_by(ROW.updated_at.desc())
        ).all()
        ranked = sorted(rows, key=lambda r: r.state != CollectionState.live.value)
        return _to_collection(ranked[0]) if ranked else None

    def of_model(
        self, session: Session, model_id: str, sink_type: str | None = None
    ) -> list[SinkCollection]:
        """A model's complete collections, live first, then newest first."""
        query = select(ROW).where(
            ROW.model_id == model_id, ROW.state.in_([s.value for s in COMPLETE])
        )
        if sink_type is not None:
            query = query.where(ROW.sink_type == sink_type)
        rows = session.scalars(query.order_by(ROW.updated_at.desc())).all()
        ranked = sorted(rows, key=lambda r: r.state != CollectionState.live.value)
        return [_to_collection(r) for r in ranked]

    def of_sink(
        self, session: Session, sink_key: str, states: frozenset[CollectionState] | None = None
    ) -> list[SinkCollection]:
        """Newest first."""
        query = select(ROW).where(ROW.sink_key == sink_key)
        if states is not None:
            query = query.where(ROW.state.in_([s.value for s in states]))
        rows = session.scalars(query.order_by(ROW.updated_at.desc())).all()
        return [_to_collection(r) for r in rows]

    def of_task(self, session: Session, task_id: str) -> list[SinkCollection]:
        rows = session.scalars(select(ROW).where(ROW.task_id == task_id)).all()
        return [_to_collection(r) for r in rows]
