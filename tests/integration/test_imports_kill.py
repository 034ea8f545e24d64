"""A worker killed (SIGKILL) in the middle of an import: recovery re-queues the task, another
worker resumes after the last committed chunk, and every session is stored exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from embtune.domain.tasks import TaskKind, TaskStatus
from embtune.runtime import Runtime
from embtune.storage.tables import ClickEventRow, SearchSessionRow
from tests.conftest import make_settings, wait_until
from tests.support.backends import Backend
from tests.support.processes import spawn

pytestmark = pytest.mark.backends("postgres-redis")

SESSIONS = 6000
CHUNK = "50"  # many small chunks: the kill lands between the first and the last


def test_killed_worker_mid_import_resumes_after_its_last_chunk_without_duplicates(
    backend: Backend, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    path = files / "sessions.jsonl"
    path.write_text("".join(
        json.dumps({"session_id": f"k{n}", "search_query": f"q{n % 97}",
                    "search_results": [{"object_id": "a", "rank": 1},
                                       {"object_id": "b", "rank": 2}],
                    "clicks": ["b"]}) + "\n"
        for n in range(SESSIONS)
    ))
    api = Runtime.build(make_settings(backend, tmp_path / "api", import_roots=[files]))
    try:
        processes.append(spawn(backend, tmp_path / "w1", "worker",
                               EMBTUNE_IMPORT_CHUNK_ROWS=CHUNK))
        task, _ = api.imports.create(url=str(path), kind="sessions")

        def committed() -> int:
            return int(api.tasks.get(task.id, TaskKind.import_).progress.extra.get("rows", 0))

        wait_until(lambda: committed() > 0, 120, 0.02)
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=10)
        at_kill = committed()
        assert 0 < at_kill < SESSIONS, "the import ended before the kill"
        processes.append(spawn(backend, tmp_path / "w2", "worker",
                               EMBTUNE_IMPORT_CHUNK_ROWS=CHUNK))
        done = wait_until(lambda: (t := api.tasks.get(task.id, TaskKind.import_)).status.is_terminal
                          and t, 240, 0.1)
        assert done.status is TaskStatus.done, done.detail
        assert done.attempts == 2
        metrics = done.metrics or {}
        assert metrics["resumed_from_row"] >= at_kill > 0
        assert (metrics["rows"], metrics["accepted"], metrics["duplicate"],
                metrics["rejected"]) == (SESSIONS, SESSIONS, 0, 0)
        with api.db.read() as session:
            assert session.scalar(select(func.count()).select_from(SearchSessionRow)) == SESSIONS
            assert session.scalar(select(func.count()).select_from(ClickEventRow)) == SESSIONS
    finally:
        api.close()
