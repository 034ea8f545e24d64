"""Reading BEIR-format data sets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path


def item_text(record: dict) -> str:
    """Title and body as one searchable text, the way BEIR evaluations embed documents."""
    title = (record.get("title") or "").strip()
    text = (record.get("text") or "").strip()
    return f"{title}. {text}" if title and text else title or text


def iter_corpus(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                yield {"object_id": str(record["_id"]), "text": item_text(record)}


def load_corpus(beir_dir: Path) -> dict[str, str]:
    return {r["object_id"]: r["text"] for r in iter_corpus(beir_dir / "corpus.jsonl")}


def load_queries(beir_dir: Path) -> dict[str, str]:
    with (beir_dir / "queries.jsonl").open(encoding="utf-8") as handle:
        return {
            str(q["_id"]): q["text"] for q in (json.loads(line) for line in handle if line.strip())
        }


def load_qrels(beir_dir: Path, split: str) -> dict[str, set[str]]:
    """Relevant documents per query (score > 0) for `split`."""
    path = beir_dir / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"no qrels for split {split!r} at {path}")
    relevant: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if int(row.get("score", 1)) > 0:
                relevant[str(row["query-id"])].add(str(row["corpus-id"]))
    return dict(relevant)
