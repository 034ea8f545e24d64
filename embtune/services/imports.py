"""Import use cases behind the API: create an import task (idempotent), list them, restart one,
and stream its rejected-rows report. Reading, canceling and the events are the task verbs every
kind shares (`TaskService` with `TaskKind.import_`).

An import task is a task like any other (`tasks` row of kind `import`, the same transitions,
queue message and recovery) that belongs to no model. Its params are the file's URL, its format
and what its rows are; the URL is checked here, once, against what the server may read for a
client (`embtune.imports.source`), and the file must exist when the task is created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from embtune.config import Settings
from embtune.domain.fingerprint import request_fingerprint
from embtune.domain.imports import ImportDataKind, ImportFormat
from embtune.domain.tasks import Task, TaskKind, TaskStatus
from embtune.errors import Conflict, InvalidParams
from embtune.imports.source import ImportSource, SourceError, check_readable, resolve_source
from embtune.services.field_errors import field_error
from embtune.services.tasks import TaskService, existing_for_key, new_task_row
from embtune.storage.db import Database, utcnow
from embtune.storage.imports_repo import ImportRepository

KIND = TaskKind.import_
REPORT_PAGE_ROWS = 1000  # rejected rows read per transaction while the report streams


def import_roots(settings: Settings) -> list[Path]:
    """Where a local import file may be: the data dir and `EMBTUNE_IMPORT_ROOTS`."""
    return [settings.data_dir.resolve(), *(root.resolve() for root in settings.import_roots)]


def checked_source(
    url: str, fmt: ImportFormat | str | None, roots: list[Path] | None
) -> ImportSource:
    """The source, readable now; a 422 naming `url` or `format` when it is not."""
    try:
        source = resolve_source(url, fmt, roots)
        check_readable(source)
    except SourceError as exc:
        raise InvalidParams(f"{exc.field}: {exc.message}",
                            [field_error([exc.field], exc.message, "value_error")]) from None
    return source


class ImportService:
    def __init__(self, db: Database, tasks: TaskService, settings: Settings) -> None:
        self.db = db
        self.tasks = tasks
        self.roots = import_roots(settings)
        self.repo = ImportRepository()

    # -- create -------------------------------------------------------------------------------
    def create(
        self,
        *,
        url: str,
        kind: ImportDataKind | str,
        format: ImportFormat | str | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """(task, created): the task this key already made when the body is the same; 409 when
        it is not; 422 naming `url` or `format` when the file cannot be read."""
        source = checked_source(url, format, self.roots)
        params = {"url": url, "format": source.format.value,
                  "data_kind": ImportDataKind(kind).value}
        fingerprint = request_fingerprint(
            {"kind": KIND.value, "params": params, "metadata": dict(metadata or {})}
        )
        with self.db.transaction() as session:
            created = self.tasks.tasks.create(session, new_task_row(
                KIND, model_id=None, idempotency_key=idempotency_key, fingerprint=fingerprint,
                params=params, metadata=metadata, now=utcnow(),
            ))
            if created is None:
                assert idempotency_key is not None
                existing = existing_for_key(self.tasks.tasks, session, idempotency_key,
                                            fingerprint)
                return existing, False
        assert created.message_id is not None
        self.tasks.send(created.id, created.message_id)
        return created, True

    # -- read and act -------------------------------------------------------------------------
    def page(self, **filters: Any) -> tuple[list[Task], int]:
        return self.tasks.page(kind=KIND, **filters)

    def restart(self, task_id: str) -> Task:
        """Back to pending under a new message; the run resumes after the last committed chunk
        (the progress row stays). A done import is 409: what it stored is stored."""
        task = self.tasks.get(task_id, KIND)
        if task.status is TaskStatus.done:
            raise Conflict(
                f"task {task_id} is done: every row of its file was stored or reported. A done "
                "import cannot be restarted; to read the file again, create a new import"
            )
        return self.tasks.restart(task_id, KIND)

    # -- the rejected-rows report ---------------------------------------------------------------
    def rejection_lines(self, task_id: str) -> Iterator[bytes]:
        """The report as NDJSON, one `{"row", "field", "reason", "excerpt"}` per line in row
        order, read a page per transaction as the response is sent. 404 (now, not mid-stream)
        for an unknown import."""
        self.tasks.get(task_id, KIND)
        return self._report_pages(task_id)

    def _report_pages(self, task_id: str) -> Iterator[bytes]:
        after = 0
        while True:
            with self.db.read() as session:
                page = self.repo.rejections(session, task_id, after_row=after,
                                            limit=REPORT_PAGE_ROWS)
            if not page:
                return
            yield b"".join(
                json.dumps(r.to_dict(), ensure_ascii=False).encode() + b"\n" for r in page
            )
            after = page[-1].row
