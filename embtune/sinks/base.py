"""What a vector sink is: a place that holds collections of catalogue vectors and one alias.

A reindex task writes a model iteration's vectors into a *new* collection (`create`, `write`,
`finish`), checks its `count`, and only then `switch`es the sink's alias to it; the collection
the alias pointed to before is kept for rollback. A failed or canceled run `drop`s what it
wrote and never switches. Everything a run does here is safe to repeat: `create` replaces a
leftover of the same name, `switch` to the collection already live is a no-op, `drop` of a
missing collection does nothing.

Each row carries the item's `object_id`, its vector (float32), the id of the model that made it
and the sha256 of the text it was made from: an incremental reindex reads those hashes back
(`records`) to tell which items changed since.

Sinks are plugins: a class with a `type_name`, a pydantic `Config` (validated when a task is
created, so a bad config is a 422 naming the field) and the methods below, registered under the
`embtune.sinks` entry-point group or built in.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embtune.errors import EmbtuneError

# A sink's name becomes part of collection names, file paths and Qdrant aliases.
SINK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class SinkError(EmbtuneError):
    """The sink cannot be reached, refused a write, or is full; the message says which and
    where, without secrets (it becomes the task's failure detail)."""


class SinkConfig(BaseModel):
    """Fields every sink config has; a sink's own `Config` adds its settings."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = Field(
        "catalogue",
        pattern=SINK_NAME_PATTERN,
        description="The sink's alias: searches read the collection it points to.",
    )


@dataclass(frozen=True)
class SinkContext:
    """Service-wide settings a sink may need (where embedded data lives, a server's URL)."""

    data_dir: Path
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    write_batch: int = 512


@dataclass(frozen=True)
class Hit:
    object_id: str
    score: float


class VectorSink(ABC):
    """One configured sink. Methods name a collection; the alias is the config's `name`."""

    type_name: ClassVar[str]
    Config: ClassVar[type[SinkConfig]]

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        self.config = config
        self.context = context

    @property
    def name(self) -> str:
        return self.config.name

    @property
    @abstractmethod
    def key(self) -> str:
        """Identifies this sink's storage (type, location, alias) without secrets; two configs
        with one key are the same sink."""

    @abstractmethod
    def create(self, collection: str, dim: int) -> None:
        """Start an empty collection for `dim`-dimensional vectors (replacing a leftover)."""

    @abstractmethod
    def write(
        self,
        collection: str,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        """Append rows (float32 vectors, L2-normalised) to a collection being written."""

    @abstractmethod
    def finish(self, collection: str) -> int:
        """Make the written collection complete (Parquet: close the file, write the manifest
        last); returns the number of rows it holds."""

    @abstractmethod
    def count(self, collection: str) -> int:
        """Rows of a complete collection; raises SinkError when it is not complete."""

    @abstractmethod
    def records(
        self, collection: str, batch: int = 4096
    ) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        """(object ids, text hashes, vectors) of a complete collection, in batches."""

    @abstractmethod
    def switch(self, collection: str) -> str | None:
        """Point the alias at `collection`, atomically for readers; the collection it pointed
        to before (None when it was unset)."""

    @abstractmethod
    def live(self) -> str | None:
        """The collection the alias points to, or None."""

    @abstractmethod
    def drop(self, collection: str) -> None:
        """Delete a collection and everything written into it; nothing when it is missing."""

    @abstractmethod
    def collections(self) -> list[str]:
        """The collections this sink holds under its name (complete or not)."""

    @abstractmethod
    def search(self, vector: np.ndarray, k: int, collection: str | None = None) -> list[Hit]:
        """The `k` nearest items by cosine similarity in `collection` (default: the live
        one); raises SinkError when there is none."""

    def close(self) -> None:  # noqa: B027 - optional: most sinks hold nothing to release
        """Release connections or file handles."""

    # -- several writers into one collection (a sharded reindex) ---------------------------
    # Each shard of a sharded reindex writes its own `part` from whichever worker process
    # claimed it; a retried shard writes its part again from the start. The defaults suit a
    # sink whose writes are idempotent per item (Qdrant: point ids derive from object ids, so
    # a retried part overwrites its own points).

    def create_shared(self, collection: str, dim: int) -> None:
        """Start an empty collection that parts written by other sink instances will fill."""
        self.create(collection, dim)

    def write_part(
        self,
        collection: str,
        part: int,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        """Rows of one part of a shared collection (see `write`)."""
        self.write(collection, object_ids, vectors, text_hashes, model_id)

    def finish_part(self, collection: str, part: int) -> dict[str, Any]:
        """This writer is done with `part`: a JSON receipt that `finish_shared` gets back, so
        only the parts of runs that completed their shard count."""
        return {"part": part}

    def abort_part(self, collection: str, part: int) -> None:  # noqa: B027 - optional
        """Abandon a part being written (its rows may stay until the part is written again)."""

    def finish_shared(self, collection: str, receipts: list[dict[str, Any]]) -> int:
        """Make a shared collection complete from its parts' receipts; its row count."""
        return self.finish(collection)


_COLLECTION_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def collection_name(sink_name: str, model_id: str, task_id: str, attempt: int) -> str:
    """One collection per model iteration and run: `<sink>-<model>-<task>-a<attempt>`, so a
    re-run after a crash writes beside its dead attempt instead of over what may be live.
    (Whole ids: they are time-ordered, so their prefixes are shared.)"""
    raw = f"{sink_name}-{model_id}-{task_id}-a{attempt}"
    return _COLLECTION_UNSAFE.sub("_", raw)
