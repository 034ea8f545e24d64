"""NDJSON import files, read line by line in fixed-size blocks (never the whole file).

The reader counts the bytes of every line it passes, so a chunk's resume point is an exact
offset into the (decompressed) stream plus a line number: a resumed import seeks there and
numbers lines on from it. A whole-file compression the name says (`.gz`, `.bz2`, `.xz`) is
undone on the fly; its progress counts the compressed bytes read, and a resume decompresses
from the start up to the offset (the formats cannot seek).
"""

from __future__ import annotations

import json
import lzma
import zlib
from collections.abc import Iterator
from typing import IO, Any

from fsspec.compression import compr

from embtune.domain.imports import Position
from embtune.imports.rows import Chunk, RawRow, ReadError, excerpt_of
from embtune.imports.source import ImportSource

BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 16 << 20  # a longer line is rejected without being held in memory


class NdjsonReader:
    def __init__(
        self,
        source: ImportSource,
        position: Position,
        chunk_rows: int,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.total_bytes = source.size()
        self.total_rows: int | None = None
        if position and position.get("size") not in (None, self.total_bytes):
            raise ReadError(f"the file changed since the import started (size "
                            f"{position['size']} → {self.total_bytes} bytes); create a new "
                            "import for the new file")
        self.chunk_rows = chunk_rows
        self.max_line_bytes = max_line_bytes
        self.offset = int(position.get("offset", 0))
        self.line = int(position.get("line", 0))
        self._raw: IO[bytes] = source.open()
        self._compressed = source.compression is not None
        self._stream: Any = (
            compr[source.compression](self._raw, mode="rb") if self._compressed else self._raw
        )
        if self.offset:
            self._stream.seek(self.offset)

    def _bytes_read(self) -> int:
        return int(self._raw.tell()) if self._compressed else self.offset

    def chunks(self) -> Iterator[Chunk]:
        rows: list[RawRow] = []
        consumed = False
        for data, length, head in self._lines():
            self.line += 1
            self.offset += length
            consumed = True
            if data is not None and not data.strip():
                continue  # a blank line is no row
            rows.append(_parse(self.line, data, head, self.max_line_bytes))
            if len(rows) >= self.chunk_rows:
                yield Chunk(rows, self._position(), self._bytes_read())
                rows, consumed = [], False
        if rows or consumed:
            yield Chunk(rows, self._position(), self.total_bytes or self._bytes_read())

    def _position(self) -> Position:
        return {"offset": self.offset, "line": self.line, "size": self.total_bytes}

    def _lines(self) -> Iterator[tuple[bytes | None, int, bytes]]:
        """(line, its length in bytes, b"") per line; (None, length, its first bytes) for a
        line over `max_line_bytes`, which is skipped rather than held."""
        pending = head = b""
        skipping = -1  # > -1: inside an over-long line, this many bytes into it
        while True:
            block = self._read()
            if not block:
                break
            start = 0
            if skipping >= 0:
                end = block.find(b"\n")
                if end < 0:
                    skipping += len(block)
                    continue
                yield None, skipping + end + 1, head
                skipping, start = -1, end + 1
            buffer = pending + block[start:] if pending else block[start:]
            begin = 0
            while (end := buffer.find(b"\n", begin)) >= 0:
                yield buffer[begin : end + 1], end + 1 - begin, b""
                begin = end + 1
            pending = buffer[begin:]
            if len(pending) > self.max_line_bytes:
                head, skipping, pending = pending[:400], len(pending), b""
        if skipping >= 0:
            yield None, skipping, head
        elif pending:
            yield pending, len(pending), b""

    def _read(self) -> bytes:
        if not self._compressed:
            return self._stream.read(BLOCK_BYTES)
        try:
            return self._stream.read(BLOCK_BYTES)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise ReadError(f"the compressed file cannot be read past line {self.line}: "
                            f"{exc}") from None

    def close(self) -> None:
        try:
            if self._compressed:
                self._stream.close()
        finally:
            self._raw.close()


def _parse(number: int, data: bytes | None, head: bytes, max_line_bytes: int) -> RawRow:
    if data is None or len(data) > max_line_bytes:
        return RawRow(number, None, excerpt_of((data or head)[:400]),
                      reason=f"line longer than {max_line_bytes} bytes")
    excerpt = excerpt_of(data[:400])
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        return RawRow(number, None, excerpt, reason="not UTF-8 text")
    except json.JSONDecodeError as exc:
        return RawRow(number, None, excerpt,
                      reason=f"not valid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(value, dict):
        return RawRow(number, None, excerpt,
                      reason=f"expected a JSON object, got {_json_type(value)}")
    return RawRow(number, value, excerpt)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
