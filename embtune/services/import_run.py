"""What an import task's run does: stream its file chunk by chunk into the clickstream or the
catalogue, each chunk in one transaction with its progress row and its rejected rows.

A chunk's transaction first locks the task row and checks that this run still owns it
(processing under its message id), so a cancel or a takeover lands between two chunks, never
inside one, and a run that lost its task stores nothing more. Because the resume point is
committed with the rows it covers, a re-queued run (its worker died) or a restarted one
continues after the last committed chunk: no row is stored twice, none is skipped, and the
counts accumulate across runs. Parsing happens before the transaction, so the task row is
locked only while the rows are written.

Two chunks are in flight: while the database stores one, a helper thread reads and checks
the next (the checks are pure Python; the store mostly waits on the database, which releases
the GIL). The order of the commits, and so the resume points, stay the file's order.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from embtune.domain.imports import ImportDataKind, ImportProgress, Rejection
from embtune.domain.tasks import Progress, Task, TaskStatus
from embtune.errors import TaskRefused, TaskStopped
from embtune.imports.readers import open_reader
from embtune.imports.rows import Chunk, ChunkReader, RawRow, ReadError, excerpt_of
from embtune.imports.source import ImportSource, SourceError, check_readable, resolve_source
from embtune.services.live_run import LiveRun
from embtune.storage.db import Database, utcnow
from embtune.storage.imports_repo import ImportRepository
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)

LOST = "task left processing during the import"


class Outcome(Protocol):
    """A row's fate as the bulk services report it (`RowOutcome`)."""

    index: int
    status: str
    reason: str | None
    errors: tuple[dict[str, Any], ...]


class RowsIngest(Protocol):
    """`ClickstreamBulk` / `ItemsBulk`: check rows (no database), then store them inside the
    caller's transaction."""

    def prepare(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> Any: ...

    def store_in(self, session: Session, prepared: Any, now: datetime) -> Sequence[Outcome]: ...


@dataclass(frozen=True)
class _Ready:
    """A chunk read and checked, waiting for its transaction."""

    chunk: Chunk
    readable: list[RawRow]
    prepared: Any


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


@dataclass
class _Clock:
    """This run's pace, for rows/s and the time left (a resumed run counts its own rows)."""

    started: float
    rows_at_start: int
    fraction_at_start: float

    def figures(self, done: ImportProgress, fraction: float) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rows = done.rows_read - self.rows_at_start
        gained = fraction - self.fraction_at_start
        eta = elapsed / gained * (1.0 - fraction) if gained > 0 else None
        return {"rows_per_s": round(rows / elapsed, 1),
                "eta_s": round(eta, 1) if eta is not None else None}


class ImportRun:
    def __init__(
        self, db: Database, ingest: Mapping[ImportDataKind, RowsIngest], *, chunk_rows: int
    ) -> None:
        self.db = db
        self.ingest = ingest
        self.chunk_rows = chunk_rows
        self.tasks = TaskRepository()
        self.repo = ImportRepository()

    def run(self, task: Task, live: LiveRun) -> dict[str, Any]:
        """Store the rest of the file; the done transition's metrics. TaskRefused when the
        file is gone or cannot be read as its format; TaskStopped when the task was canceled
        or taken over (nothing of the current chunk is stored)."""
        kind = ImportDataKind(task.params.get("data_kind", ImportDataKind.sessions))
        source = self._source(task)
        with self.db.read() as session:
            done = self.repo.progress(session, task.id) or ImportProgress()
        resumed_from = done.rows_read
        try:
            reader = open_reader(source, done.position, self.chunk_rows, kind)
        except ReadError as exc:
            raise TaskRefused(f"{source.url}: {exc}") from None
        clock = _Clock(time.monotonic(), resumed_from, _fraction(done, reader))
        chunks = _guarded(reader, source.url)
        ingest = self.ingest[kind]

        def read_next() -> _Ready | None:
            chunk = next(chunks, None)
            if chunk is None:
                return None
            readable = [row for row in chunk.rows if row.value is not None]
            prepared = ingest.prepare([r.value for r in readable], utcnow()) if readable else None
            return _Ready(chunk, readable, prepared)

        try:
            self._report(live, done, reader, clock,
                         f"resuming after row {resumed_from}" if resumed_from else "reading")
            # the helper thread ends with this block, before the reader is closed
            with ThreadPoolExecutor(1, thread_name_prefix=f"embtune-import-{task.id}") as ahead:
                upcoming = ahead.submit(read_next)
                while (ready := upcoming.result()) is not None:
                    if live.stop.is_set():
                        raise TaskStopped(LOST)
                    upcoming = ahead.submit(read_next)
                    done = self._store(task, live, ingest, ready, done, reader, clock)
        finally:
            reader.close()
        seconds = time.monotonic() - clock.started
        return {
            "rows": done.rows_read,
            "bytes": done.bytes_read,
            "chunks": done.chunks,
            **done.counts(),
            "seconds": round(seconds, 3),
            "rows_per_s": round((done.rows_read - resumed_from) / max(seconds, 1e-6), 1),
            "resumed_from_row": resumed_from,
            "peak_rss_mb": peak_rss_mb(),
        }

    def _source(self, task: Task) -> ImportSource:
        """The file again (the API checked it at create time; it may have gone since). No root
        check: the URL was accepted by the API, whose settings say what a client may read."""
        try:
            source = resolve_source(task.params.get("url", ""), task.params.get("format"),
                                    None)
            check_readable(source)
        except SourceError as exc:
            raise TaskRefused(f"{exc.field}: {exc.message}") from None
        return source

    def _store(
        self,
        task: Task,
        live: LiveRun,
        ingest: RowsIngest,
        ready: _Ready,
        done: ImportProgress,
        reader: ChunkReader,
        clock: _Clock,
    ) -> ImportProgress:
        """One chunk: its rows, its rejected rows, the progress row and the task's progress,
        in one transaction that holds the task row while this run owns it."""
        chunk, readable = ready.chunk, ready.readable
        now = utcnow()
        with self.db.transaction() as session:
            owned = self.tasks.get(session, task.id, lock=True)
            if owned is None or owned.status is not TaskStatus.processing or (
                owned.message_id != live.message_id
            ):
                raise TaskStopped(LOST)
            outcomes = (ingest.store_in(session, ready.prepared, now)
                        if ready.prepared is not None else [])
            counts, rejections = _tally(chunk.rows, readable, outcomes)
            after = done.after_chunk(chunk.position, len(chunk.rows), chunk.bytes_read, counts)
            self.repo.add_rejections(session, task.id, rejections)
            self.repo.save_progress(session, task.id, after, now)
            progress = self._progress(after, reader, clock)
            # a committed chunk is a sign of life: the heartbeat thread waits on this row lock
            self.tasks.update_live(session, task.id, live.message_id,
                                   {"progress": progress.to_dict(), "heartbeat_at": now})
        live.report(step=progress.step, total_steps=progress.total_steps,
                    message=progress.message, **progress.extra)
        return after

    def _report(self, live: LiveRun, done: ImportProgress, reader: ChunkReader, clock: _Clock,
                message: str) -> None:
        progress = self._progress(done, reader, clock, message)
        live.report(step=progress.step, total_steps=progress.total_steps,
                    message=progress.message, **progress.extra)

    @staticmethod
    def _progress(
        done: ImportProgress, reader: ChunkReader, clock: _Clock, message: str = ""
    ) -> Progress:
        """The contract's figures: step = bytes read, total_steps = the file's size."""
        fraction = _fraction(done, reader)
        extra = {
            "rows": done.rows_read,
            **clock.figures(done, fraction),
            "bytes": done.bytes_read,
            "total_bytes": reader.total_bytes,
            **done.counts(),
        }
        if reader.total_rows is not None:
            extra["total_rows"] = reader.total_rows
        # one phase message for the whole run: a message that changed per chunk would write
        # a history event per chunk; the figures say how far it is
        return Progress(fraction, done.bytes_read, reader.total_bytes, message or "importing",
                        extra)


def _fraction(done: ImportProgress, reader: ChunkReader) -> float:
    if reader.total_rows:
        return min(1.0, done.rows_read / reader.total_rows)
    if reader.total_bytes:
        return min(1.0, done.bytes_read / reader.total_bytes)
    return 0.0


def _guarded(reader: ChunkReader, url: str) -> Any:
    """The reader's chunks; a file that turns out unreadable part-way is refused by name."""
    try:
        yield from reader.chunks()
    except ReadError as exc:
        raise TaskRefused(f"{url}: {exc}") from None


def _tally(
    rows: list[RawRow], readable: list[RawRow], outcomes: Sequence[Outcome]
) -> tuple[dict[str, int], list[Rejection]]:
    """Counts per outcome, and a report line for every row not stored: unreadable rows
    (reason from the reader) and rows the bulk service rejected or found in conflict."""
    counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    rejections: list[Rejection] = []
    for row in rows:
        if row.value is None:
            counts["rejected"] += 1
            rejections.append(Rejection(row.number, row.reason or "unreadable row", row.field,
                                        row.excerpt))
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if outcome.status in ("rejected", "conflict"):
            row = readable[outcome.index]
            rejections.append(Rejection(
                row.number,
                outcome.reason or outcome.status,
                _field(outcome.errors),
                row.excerpt if row.excerpt is not None else excerpt_of(row.value),
            ))
    rejections.sort(key=lambda r: r.row)
    return counts, rejections


def _field(errors: Sequence[Mapping[str, Any]]) -> str | None:
    """The first error's field path in the row (`search_results.0.object_id`)."""
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if loc:
            return ".".join(loc)
    return None
