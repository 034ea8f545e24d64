"""Registering and reading embedding models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from embtune.artifacts import ArtifactStore, ServiceAreas, resolve_source
from embtune.domain.models import EmbeddingModel
from embtune.errors import BadRequest, NotFound
from embtune.plugins.registry import PluginRegistry
from embtune.storage.db import Database, utcnow
from embtune.storage.evalsets_repo import EvaluationSetRepository
from embtune.storage.ids import new_id
from embtune.storage.models_repo import ModelRepository


class ModelRegistry:
    """The registry of embedding models: register, read, lineage, installed plugins."""

    def __init__(
        self,
        db: Database,
        plugins: PluginRegistry,
        roots: list[Path] | None = None,
        artifacts: ArtifactStore | None = None,
        areas: ServiceAreas | None = None,
    ) -> None:
        self.db = db
        self.plugins = plugins
        self.roots = roots
        self.artifacts = artifacts
        self.areas = areas  # what embtune writes: never a model source (see ServiceAreas)
        self.repo = ModelRepository()
        self.evaluation_sets = EvaluationSetRepository()

    def register(
        self,
        *,
        name: str,
        plugin_name: str,
        source: str,
        evaluation_set_id: str | None = None,
    ) -> EmbeddingModel:
        """`evaluation_set_id`: the judged set (id or name) its tasks use by default."""
        if self.plugins.find(plugin_name) is None:
            known = ", ".join(p.name for p in self.plugins.all())
            raise BadRequest(f"plugin_name: {plugin_name!r} is not installed (installed: {known})")
        try:
            if self.artifacts is not None and self.artifacts.owns(source):
                self.artifacts.localize(source)  # complete in the store (and now cached)
                stored = source
            else:
                resolved = resolve_source(source, self.roots, self.areas)
                stored = source if source.startswith("builtin:") else str(resolved)
        except ValueError as exc:
            raise BadRequest(f"source: {exc}") from None
        with self.db.transaction() as session:
            set_id = self._set_id(session, evaluation_set_id)
            return self.repo.insert(
                session,
                {
                    "id": new_id(),
                    "name": name,
                    "plugin_name": plugin_name,
                    "source": stored,
                    "parent_id": None,
                    "task_id": None,
                    "metrics": None,
                    "created_at": utcnow(),
                    "evaluation_set_id": set_id,
                },
            )

    def set_evaluation_set(self, model_id: str, id_or_name: str | None) -> EmbeddingModel:
        """Name the judged set the model's tasks use unless a task names another (None:
        none). Sets are immutable, so the id stored here always means the same judgements."""
        with self.db.transaction() as session:
            if self.repo.get(session, model_id) is None:
                raise NotFound(f"embedding model {model_id!r} not found")
            model = self.repo.set_evaluation_set(
                session, model_id, self._set_id(session, id_or_name)
            )
        assert model is not None  # models are never deleted
        return model

    def _set_id(self, session: Session, id_or_name: str | None) -> str | None:
        if id_or_name is None:
            return None
        found = self.evaluation_sets.find(session, id_or_name)
        if found is None:
            raise NotFound(f"evaluation_set_id: evaluation set {id_or_name!r} not found")
        return found.id

    def get(self, model_id: str) -> EmbeddingModel:
        with self.db.read() as session:
            model = self.repo.get(session, model_id)
        if model is None:
            raise NotFound(f"embedding model {model_id!r} not found")
        return model

    def page(self, *, offset: int, limit: int) -> tuple[list[EmbeddingModel], int]:
        with self.db.read() as session:
            return self.repo.page(session, offset=offset, limit=limit)

    def lineage(self, model_id: str, max_depth: int = 100) -> list[EmbeddingModel]:
        """The model and its ancestors, newest first."""
        chain: list[EmbeddingModel] = []
        current: str | None = model_id
        with self.db.read() as session:
            while current is not None and len(chain) < max_depth:
                model = self.repo.get(session, current)
                if model is None:
                    break
                chain.append(model)
                current = model.parent_id
        if not chain:
            raise NotFound(f"embedding model {model_id!r} not found")
        return chain

    def describe_plugins(self) -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "description": p.description,
                "trainable": p.trainable,
                "params_schema": p.params_schema(),
            }
            for p in self.plugins.all()
        ]

    def weights_dir(self, model: EmbeddingModel) -> Path:
        """The local directory of a model's weights (fetched from a remote artifact store the
        first time); ValueError says why there is none.

        A local source is checked again as at registration (except for the roots, which may
        have changed since): a row registered before that check existed may point at the data
        dir, and serving it would read the live database."""
        if self.artifacts is not None and self.artifacts.owns(model.source):
            return Path(self.artifacts.localize(model.source))
        return resolve_source(model.source, areas=self.areas)
