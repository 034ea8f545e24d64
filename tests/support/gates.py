"""Gates that pause a run at a chosen point, so a test can act (cancel) exactly there.

They subclass the production classes and call straight through to them: the code under test is
the real one, only held still for a moment. A gate never waits forever — `go` is always set by
the test's `finally`, and a forgotten one times out — so no worker thread outlives its test.
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy.orm import Session

from embtune.config import Settings
from embtune.services.clickstream import BatchTrainingData, ClickstreamService
from embtune.storage.clickstream_repo import ClickstreamRepository
from embtune.storage.db import Database

GATE_TIMEOUT_S = 15.0


class Gate:
    """`reached` is set when the worker arrives; it then waits for `go`."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def pass_through(self) -> None:
        self.reached.set()
        self.go.wait(GATE_TIMEOUT_S)

    def wait_reached(self, timeout: float = GATE_TIMEOUT_S) -> None:
        if not self.reached.wait(timeout):
            raise AssertionError(f"the run did not reach the gate within {timeout} s")


class _GatedRepository(ClickstreamRepository):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def mark_released(self, session: Session, batch_id: str, now: datetime) -> None:
        super().mark_released(session, batch_id, now)
        self.gate.pass_through()


class GatedClickstream(ClickstreamService):
    """`ClickstreamService` that pauses a run's release of the open batch.

    `before`: when the run asks for its training data, before anything of the release happens
    (a cancel here must leave the sessions in the open batch). `released`: right after the batch
    is marked released and before the task records it — the window in which a cancel used to
    orphan the batch (a cancel now has to wait for the record, which is in the same
    transaction)."""

    def __init__(self, db: Database, settings: Settings, *, before: Gate | None = None,
                 released: Gate | None = None) -> None:
        super().__init__(db, settings)
        self.before = before
        self.returned = threading.Event()  # the gated call has returned or raised
        if released is not None:
            self.clickstream = _GatedRepository(released)

    def data_for_run(
        self, task_id: str, message_id: str, batch_id: str | None
    ) -> BatchTrainingData:
        try:
            if self.before is not None:
                self.before.pass_through()
            return super().data_for_run(task_id, message_id, batch_id)
        finally:
            self.returned.set()
