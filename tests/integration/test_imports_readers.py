"""The import readers on their own: resume points that continue exactly where a chunk ended
(NDJSON offsets, gzip included; Parquet row groups skipped then sliced), over-long lines, and a
file that changed under a resumed import."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embtune.domain.imports import ImportDataKind, Position
from embtune.imports.readers import open_reader
from embtune.imports.rows import ReadError
from embtune.imports.source import resolve_source

ROOT = "/embtune-reader-tests"


@pytest.fixture
def fs() -> Iterator[fsspec.AbstractFileSystem]:
    memory = fsspec.filesystem("memory")
    yield memory
    if memory.exists(ROOT):
        memory.rm(ROOT, recursive=True)


def put(fs: fsspec.AbstractFileSystem, name: str, data: bytes) -> str:
    with fs.open(f"{ROOT}/{name}", "wb") as handle:
        handle.write(data)
    return f"memory://{ROOT.lstrip('/')}/{name}"


def numbers(url: str, position: Position, chunk_rows: int) -> list[list[int]]:
    reader = open_reader(resolve_source(url, None, None), position, chunk_rows,
                         ImportDataKind.items)
    try:
        return [[row.number for row in chunk.rows] for chunk in reader.chunks()]
    finally:
        reader.close()


def positions(url: str, chunk_rows: int) -> list[Position]:
    reader = open_reader(resolve_source(url, None, None), {}, chunk_rows, ImportDataKind.items)
    try:
        return [chunk.position for chunk in reader.chunks()]
    finally:
        reader.close()


LINES = b"".join(json.dumps({"object_id": f"i{n}", "text": "t"}).encode() + b"\n"
                 for n in range(7))


# mtime=0 and ids: a gzip stream carries its creation time, and pytest-xdist's workers must
# collect the same test ids even when they collect in different seconds
@pytest.mark.parametrize("name,data", [("items.jsonl", LINES),
                                       ("items.jsonl.gz", gzip.compress(LINES, mtime=0))],
                         ids=["plain", "gzip"])
def test_an_ndjson_resume_continues_at_the_next_line(
    fs: fsspec.AbstractFileSystem, name: str, data: bytes
) -> None:
    url = put(fs, name, data)
    assert numbers(url, {}, 3) == [[1, 2, 3], [4, 5, 6], [7]]
    after_first = positions(url, 3)[0]
    assert after_first["line"] == 3 and after_first["offset"] == len(b"".join(
        LINES.splitlines(keepends=True)[:3]))
    assert numbers(url, after_first, 3) == [[4, 5, 6], [7]]


def test_an_over_long_line_is_one_rejected_row_and_the_next_lines_are_read(
    fs: fsspec.AbstractFileSystem,
) -> None:
    long_line = b'{"object_id": "' + b"x" * 5000 + b'"}\n'
    url = put(fs, "long.jsonl", LINES[:40] + long_line + LINES)
    reader = open_reader(resolve_source(url, None, None), {}, 100, ImportDataKind.items)
    reader.max_line_bytes = 1000  # type: ignore[attr-defined]
    rows = [row for chunk in reader.chunks() for row in chunk.rows]
    reader.close()
    over = [row for row in rows if row.value is None]
    assert len(over) == 1 and "longer than 1000 bytes" in (over[0].reason or "")
    assert rows[-1].value == {"object_id": "i6", "text": "t"}


def test_a_parquet_resume_skips_whole_row_groups_then_slices(
    fs: fsspec.AbstractFileSystem,
) -> None:
    table = pa.table({"object_id": [f"i{n}" for n in range(10)], "text": ["t"] * 10})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=4)
    url = put(fs, "items.parquet", out.getvalue())
    for done in (0, 4, 5, 9, 10):
        chunks = numbers(url, {"row": done}, 3)
        assert [n for chunk in chunks for n in chunk] == list(range(done + 1, 11))
        assert all(0 < len(chunk) <= 3 for chunk in chunks)


def test_a_file_that_changed_since_the_import_started_is_not_resumed(
    fs: fsspec.AbstractFileSystem,
) -> None:
    url = put(fs, "items.jsonl", LINES)
    position = positions(url, 3)[0]
    put(fs, "items.jsonl", LINES + LINES)
    with pytest.raises(ReadError, match="changed since the import started"):
        numbers(url, position, 3)
