"""The reader for an import file's format, opened at a resume point."""

from __future__ import annotations

from embtune.domain.imports import ImportDataKind, ImportFormat, Position
from embtune.imports.ndjson import NdjsonReader
from embtune.imports.parquet import ParquetReader
from embtune.imports.rows import ChunkReader
from embtune.imports.source import ImportSource


def open_reader(
    source: ImportSource, position: Position, chunk_rows: int, kind: ImportDataKind
) -> ChunkReader:
    """ReadError when the file as a whole cannot be read (not Parquet, changed since the
    import started); OSError when it cannot be opened."""
    if source.format is ImportFormat.parquet:
        return ParquetReader(source, position, chunk_rows, kind)
    return NdjsonReader(source, position, chunk_rows)
