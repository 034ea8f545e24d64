"""Import tasks on the wire: the create body and the task.

An import task is read like a fine-tuning task (`TaskPublic`) plus its kind and what its params
say (the file's URL, its format, what its rows are), so a client need not dig in `params`. It
belongs to no model: `embedding_model_id` is null.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, computed_field

from embtune.domain.imports import ImportDataKind, ImportFormat
from embtune.domain.tasks import TaskKind
from embtune.schemas.common import NO_NUL
from embtune.schemas.json_object import JsonObject
from embtune.schemas.tasks import TaskPublic

URL_MAX_LENGTH = 4096


class ImportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=URL_MAX_LENGTH, pattern=NO_NUL,
        description="The file: an absolute local path or file:// URL under the data dir or "
        "EMBTUNE_IMPORT_ROOTS, or an fsspec URL (s3://, gs://, memory://) whose package is "
        "installed.",
    )
    format: ImportFormat | None = Field(
        None, description="Default: from the extension (.jsonl, .ndjson, .json, optionally "
        ".gz → ndjson; .parquet → parquet).",
    )
    kind: ImportDataKind = Field(
        description="What each row is: a search session (the bulk endpoint's row) or a "
        "catalogue item (object_id, text, meta?).",
    )
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    metadata: JsonObject = None


class ImportTaskPublic(TaskPublic):
    # Read from the domain `Task` like `TaskPublic`; the fields below the kind are computed from
    # the task's params, so they can never disagree with them.

    embedding_model_id: str | None = None  # type: ignore[assignment]
    kind: TaskKind

    @computed_field(description="The file the task reads.")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return str(self.params.get("url", ""))

    @computed_field(description="ndjson or parquet.")  # type: ignore[prop-decorator]
    @property
    def format(self) -> ImportFormat | None:
        value = self.params.get("format")
        return ImportFormat(value) if value else None

    @computed_field(  # type: ignore[prop-decorator]
        description="What the file's rows are: sessions or items."
    )
    @property
    def data_kind(self) -> ImportDataKind | None:
        value = self.params.get("data_kind")
        return ImportDataKind(value) if value else None
