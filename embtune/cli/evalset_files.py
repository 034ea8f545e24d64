"""Reading judged query sets from files for `embtune evalset import`: a BEIR directory (graded
qrels kept, unlike the demo's reader, which only needs what is relevant) or JSONL, one query per
line in the shape the API takes.

Each reader returns the queries and where each came from (a line, or a query id), so a refusal
from the server can be pointed back at the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class SetFileError(Exception):
    """One readable line about the file; the import stops with a non-zero exit."""


@dataclass
class ReadSet:
    queries: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # per query: "line 3", "query 'q1'"
    skipped: int = 0  # queries with no item graded above 0: nothing to find


def file_lines(
    handle: IO[bytes], on_bytes: Callable[[int], Any]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed JSON object) per non-blank line."""
    for number, raw in enumerate(handle, start=1):
        on_bytes(len(raw))
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SetFileError(f"line {number}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise SetFileError(f"line {number}: expected a JSON object")
        yield number, value


def read_jsonl(path: Path, on_bytes: Callable[[int], Any]) -> ReadSet:
    """`{"query_id", "text", "relevant": [{"object_id", "grade"}]}` per line, as posted; the
    server checks the fields and the CLI points its complaints at the line."""
    read = ReadSet()
    with path.open("rb") as handle:
        for number, query in file_lines(handle, on_bytes):
            read.queries.append(query)
            read.origins.append(f"line {number}")
    return read


def read_beir(directory: Path, split: str, on_bytes: Callable[[int], Any]) -> ReadSet:
    """The queries of `qrels/<split>.tsv`, in `queries.jsonl` order, with their graded items.

    A negative score (some BEIR sets mark judged-as-harmful that way) counts as 0: judged, not
    relevant. A query whose items are all graded 0 is skipped and counted: it has nothing to
    find, so the server would refuse it."""
    qrels_path = directory / "qrels" / f"{split}.tsv"
    queries_path = directory / "queries.jsonl"
    for path in (qrels_path, queries_path):
        if not path.is_file():
            raise SetFileError(f"{path}: no such file (a BEIR directory has queries.jsonl and "
                               f"qrels/<split>.tsv)")
    grades = _read_qrels(qrels_path, on_bytes)
    texts: dict[str, str] = {}
    with queries_path.open("rb") as handle:
        for number, record in file_lines(handle, on_bytes):
            query_id = str(record.get("_id", ""))
            if query_id in grades:
                text = record.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise SetFileError(f"queries.jsonl line {number}: query {query_id!r} "
                                       "has no text")
                texts[query_id] = text
    missing = [query_id for query_id in grades if query_id not in texts]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise SetFileError(f"{len(missing)} queries of qrels/{split}.tsv are not in "
                           f"queries.jsonl: {shown}")
    read = ReadSet()
    for query_id, text in texts.items():
        judged = grades[query_id]
        if not any(grade > 0 for grade in judged.values()):
            read.skipped += 1
            continue
        read.queries.append({
            "query_id": query_id,
            "text": text,
            "relevant": [{"object_id": oid, "grade": grade} for oid, grade in judged.items()],
        })
        read.origins.append(f"query {query_id!r}")
    return read


def _read_qrels(path: Path, on_bytes: Callable[[int], Any]) -> dict[str, dict[str, int]]:
    grades: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(rows, start=1):
            on_bytes(len("\t".join(row).encode()) + 1)
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise SetFileError(f"{path.name} line {number}: expected query-id, corpus-id "
                                   "and score separated by tabs")
            try:
                score = int(row[2])
            except ValueError:
                raise SetFileError(f"{path.name} line {number}: score {row[2]!r} is not an "
                                   "integer") from None
            grades.setdefault(row[0], {})[row[1]] = max(score, 0)
    return grades
