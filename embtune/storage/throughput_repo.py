"""`throughput_samples` <-> `ThroughputSample`: a small, self-pruning history per host."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from embtune.domain.throughput import SampleKind, ThroughputSample
from embtune.storage.tables import ThroughputSampleRow

# Kept per host and kind: enough for a median over several model sizes and precisions, small
# enough that reading them costs nothing.
KEEP_PER_HOST_KIND = 50


class ThroughputRepository:
    """Stateless; every method works inside the caller's transaction."""

    def add(
        self,
        session: Session,
        *,
        host: str,
        samples: list[ThroughputSample],
        model_id: str | None,
        task_id: str | None,
        now: datetime,
    ) -> None:
        if not samples:
            return
        session.execute(
            insert(ThroughputSampleRow),
            [
                {
                    "host": host, "kind": s.kind.value, "model_params": s.model_params,
                    "model_id": model_id, "requested_precision": s.requested_precision,
                    "precision": s.precision, "device": s.device, "seq_length": s.seq_length,
                    "batch_size": s.batch_size, "units": s.units, "seconds": s.seconds,
                    "task_id": task_id, "recorded_at": now,
                }
                for s in samples
            ],
        )
        for kind in {s.kind for s in samples}:
            self._prune(session, host, kind)

    def _prune(self, session: Session, host: str, kind: SampleKind) -> None:
        keep = (
            select(ThroughputSampleRow.id)
            .where(ThroughputSampleRow.host == host, ThroughputSampleRow.kind == kind.value)
            .order_by(ThroughputSampleRow.recorded_at.desc(), ThroughputSampleRow.id.desc())
            .limit(KEEP_PER_HOST_KIND)
        )
        kept = list(session.scalars(keep))
        if len(kept) < KEEP_PER_HOST_KIND:
            return
        session.execute(
            delete(ThroughputSampleRow)
            .where(
                ThroughputSampleRow.host == host,
                ThroughputSampleRow.kind == kind.value,
                ThroughputSampleRow.id < min(kept),
            )
            .execution_options(synchronize_session=False)
        )

    def recent(
        self,
        session: Session,
        *,
        host: str,
        model_params: int,
        requested_precision: str,
        limit: int,
    ) -> list[ThroughputSample]:
        """The host's latest samples for this model size and precision setting, newest first."""
        rows = session.scalars(
            select(ThroughputSampleRow)
            .where(
                ThroughputSampleRow.host == host,
                ThroughputSampleRow.model_params == model_params,
                ThroughputSampleRow.requested_precision == requested_precision,
            )
            .order_by(ThroughputSampleRow.recorded_at.desc(), ThroughputSampleRow.id.desc())
            .limit(limit)
        ).all()
        return [
            ThroughputSample(
                SampleKind(r.kind), r.units, r.seconds, r.model_params, r.requested_precision,
                r.precision, r.device, r.seq_length, r.batch_size,
            )
            for r in rows
        ]

    def latest_host(self, session: Session, *, model_params: int) -> str | None:
        """The host that most recently measured a model of this size."""
        return session.scalar(
            select(ThroughputSampleRow.host)
            .where(ThroughputSampleRow.model_params == model_params)
            .order_by(ThroughputSampleRow.recorded_at.desc(), ThroughputSampleRow.id.desc())
            .limit(1)
        )

    def hosts(self, session: Session) -> list[str]:
        return list(session.scalars(select(ThroughputSampleRow.host).distinct()))
