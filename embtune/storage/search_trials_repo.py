"""`search_trials` <-> `SearchTrial`: a search's record, one short transaction per change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from embtune.domain.search_trials import SearchTrial, TrialState
from embtune.storage.tables import SearchTrialRow


class SearchTrialRepository:
    """Stateless; every method works inside the caller's transaction."""

    def list(self, session: Session, task_id: str) -> list[SearchTrial]:
        rows = session.scalars(
            select(SearchTrialRow)
            .where(SearchTrialRow.task_id == task_id)
            .order_by(SearchTrialRow.number)
        )
        return [_to_trial(row) for row in rows]

    def start(
        self, session: Session, task_id: str, number: int, params: dict[str, Any], now: datetime
    ) -> None:
        session.add(
            SearchTrialRow(
                task_id=task_id, number=number, state=TrialState.running.value, params=params,
                value=None, intermediate=[], metrics=None, detail=None, started_at=now,
                finished_at=None,
            )
        )
        session.flush()

    def finish(
        self,
        session: Session,
        task_id: str,
        number: int,
        *,
        state: TrialState,
        now: datetime,
        value: float | None = None,
        intermediate: list[list[float]] | None = None,
        metrics: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> bool:
        """running → `state`; False when the trial is not running (already ended elsewhere)."""
        values: dict[str, Any] = {
            "state": state.value, "value": value, "metrics": metrics, "detail": detail,
            "finished_at": now,
        }
        if intermediate is not None:
            values["intermediate"] = intermediate
        result = session.execute(
            update(SearchTrialRow)
            .where(
                SearchTrialRow.task_id == task_id,
                SearchTrialRow.number == number,
                SearchTrialRow.state == TrialState.running.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def interrupt_running(self, session: Session, task_id: str, now: datetime, detail: str) -> int:
        """Every running trial of the task → interrupted (its run is gone); how many."""
        result = session.execute(
            update(SearchTrialRow)
            .where(
                SearchTrialRow.task_id == task_id,
                SearchTrialRow.state == TrialState.running.value,
            )
            .values(state=TrialState.interrupted.value, detail=detail, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount


def _to_trial(row: SearchTrialRow) -> SearchTrial:
    return SearchTrial(
        task_id=row.task_id,
        number=row.number,
        state=TrialState(row.state),
        params=dict(row.params or {}),
        value=row.value,
        intermediate=[list(pair) for pair in row.intermediate or []],
        metrics=row.metrics,
        detail=row.detail,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
