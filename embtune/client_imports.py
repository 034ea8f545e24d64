"""The client's import-task calls, as a mixin of `embtune.client.Client`.

An import task reads a file the *server* can reach (a path under its data dir or an
`EMBTUNE_IMPORT_ROOTS` entry, or an fsspec URL: `s3://`, `gs://`, `file://`) and ingests its
sessions or items in chunks, so nothing streams through the client. Written against `Client`'s
plumbing (`_json`, `_page`, `_download`, `_follow`), like `client_reindex.py`.

    with Client() as api:
        task = api.create_import("s3://logs/2026-11.parquet", kind="sessions")
        for task in api.follow_import(task.id):
            print(task.progress.fraction)
        if task.metrics and task.metrics["rejected"]:
            api.download_rejections(task.id, Path("rejected.ndjson"))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from embtune.schemas.imports import ImportTaskPublic
from embtune.schemas.tasks import TaskEventPublic

IMPORTS = "/api/v1/imports"


class ImportsClientMixin:
    """Import tasks: sessions or items from an NDJSON or Parquet file, read by the server."""

    def create_import(
        self,
        url: str,
        *,
        kind: str,
        format: str | None = None,  # the API field's name, shadowing the builtin here only
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ImportTaskPublic:
        """Queue an import of `url` (a path or an fsspec URL the server can read). `kind`:
        "sessions" or "items"; `format`: "ndjson" or "parquet" (default: from the extension).
        The same `idempotency_key` and body again returns the same task."""
        body = {
            "url": url,
            "kind": kind,
            "format": format,
            "idempotency_key": idempotency_key,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        return self._json("POST", IMPORTS, ImportTaskPublic,  # type: ignore[attr-defined]
                          json={name: value for name, value in body.items() if value is not None})

    def list_imports(
        self, offset: int = 0, limit: int = 20, status: str | None = None
    ) -> Any:  # Page[ImportTaskPublic]
        return self._page(  # type: ignore[attr-defined]
            IMPORTS, ImportTaskPublic, {"offset": offset, "limit": limit, "status": status}
        )

    def get_import(self, task_id: str) -> ImportTaskPublic:
        return self._json("GET", f"{IMPORTS}/{task_id}",  # type: ignore[attr-defined]
                          ImportTaskPublic)

    def import_events(self, task_id: str) -> list[TaskEventPublic]:
        return self._json("GET", f"{IMPORTS}/{task_id}/events",  # type: ignore[attr-defined]
                          list[TaskEventPublic])

    def cancel_import(self, task_id: str) -> ImportTaskPublic:
        """Stop a pending or running import; the chunks it committed stay."""
        return self._json("PUT", f"{IMPORTS}/{task_id}/cancel",  # type: ignore[attr-defined]
                          ImportTaskPublic)

    def restart_import(self, task_id: str) -> ImportTaskPublic:
        """Queue a failed, refused or canceled import again: it resumes after its last
        committed chunk. A done import is a ConflictError."""
        return self._json("PUT", f"{IMPORTS}/{task_id}/restart",  # type: ignore[attr-defined]
                          ImportTaskPublic)

    def follow_import(self, task_id: str, interval_s: float = 0.5) -> Iterator[ImportTaskPublic]:
        """Yield the import task as it changes until it reaches a final state."""
        return self._follow(self.get_import, task_id, interval_s)  # type: ignore[attr-defined]

    def download_rejections(self, task_id: str, target: Path) -> Path:
        """Stream the import's rejected rows to `target` as NDJSON, in row order: one
        `{"row", "field", "reason", "excerpt"}` per line (an empty file when none)."""
        return self._download(f"{IMPORTS}/{task_id}/rejections",  # type: ignore[attr-defined]
                              target)
