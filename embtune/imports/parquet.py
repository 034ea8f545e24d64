"""Parquet import files, read through pyarrow one record batch at a time.

Only the columns an import uses are read. A resume point is the number of rows done: whole row
groups before it are skipped without being read, and the first batch after it is sliced.
A file that lacks a required column is still read to the end, every row rejected naming the
column (from the file's metadata alone: no data is decoded), so the rejected-rows report says
what is wrong with each row as it does for a malformed NDJSON line, and the task ends `done`
with the counts rather than failing with a message about rows it never looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from embtune.domain.imports import ImportDataKind, Position
from embtune.imports.rows import COLUMNS, REQUIRED, Chunk, RawRow, ReadError, plain
from embtune.imports.source import ImportSource


class ParquetReader:
    def __init__(
        self, source: ImportSource, position: Position, chunk_rows: int, kind: ImportDataKind
    ) -> None:
        self.total_bytes = source.size()
        if position and position.get("size") not in (None, self.total_bytes):
            raise ReadError(f"the file changed since the import started (size "
                            f"{position['size']} → {self.total_bytes} bytes); create a new "
                            "import for the new file")
        self.chunk_rows = chunk_rows
        self.done = int(position.get("row", 0))
        self._handle: IO[bytes] = source.open()
        try:
            self.file = pq.ParquetFile(self._handle)
        except (pa.ArrowException, OSError) as exc:
            self._handle.close()
            raise ReadError(f"not a readable Parquet file: {exc}") from None
        self.total_rows: int | None = self.file.metadata.num_rows
        names = self.file.schema_arrow.names
        self.columns = [c for c in COLUMNS[kind] if c in names]
        self.missing = [c for c in REQUIRED[kind] if c not in names]
        self._names = names

    def chunks(self) -> Iterator[Chunk]:
        if self.missing:
            yield from self._all_rejected()
            return
        skip = self.done
        groups = []
        for index in range(self.file.num_row_groups):
            rows = self.file.metadata.row_group(index).num_rows
            if not groups and skip >= rows:
                skip -= rows  # a whole row group done before: not read at all
                continue
            groups.append(index)
        if not groups:
            return
        batches = self.file.iter_batches(
            batch_size=self.chunk_rows, row_groups=groups, columns=self.columns
        )
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise ReadError(f"the Parquet file cannot be read past row {self.done}: "
                                f"{exc}") from None
            if batch is None:
                return
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch, skip = batch.slice(skip), 0
            first = self.done + 1
            rows = [RawRow(first + n, value, None) for n, value in
                    enumerate(_values(batch))]
            self.done += len(rows)
            yield Chunk(rows, self._position(), self._bytes_read())

    def _all_rejected(self) -> Iterator[Chunk]:
        column = self.missing[0]
        reason = (f"the file has no `{column}` column (its columns: "
                  f"{', '.join(self._names) or 'none'})")
        total = self.total_rows or 0
        while self.done < total:
            count = min(self.chunk_rows, total - self.done)
            rows = [RawRow(self.done + n + 1, None, field=column, reason=reason)
                    for n in range(count)]
            self.done += count
            yield Chunk(rows, self._position(), self._bytes_read())

    def _position(self) -> Position:
        return {"row": self.done, "size": self.total_bytes}

    def _bytes_read(self) -> int:
        """Parquet is read by row group, not front to back: the bytes so far are estimated
        from the share of rows done."""
        if not self.total_rows:
            return self.total_bytes
        return self.total_bytes * self.done // self.total_rows

    def close(self) -> None:
        self._handle.close()


def _values(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    for value in batch.to_pylist():
        yield plain(value)
