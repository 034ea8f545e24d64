"""Aliases: point a stable name at a model iteration, read it with its history, roll it back,
and resolve a name the way `/embed` and `download` do."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from embtune.domain.aliases import Alias, AliasAction, AliasChange
from embtune.errors import InvalidParams, NotFound
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database
from embtune.storage.models_repo import ModelRepository

HISTORY_SHOWN = 20  # changes returned with an alias; enough to pick a rollback by eye
# What `new_id` makes: an alias spelled like one could never be reached, since a model id wins
# when a name is resolved.
MODEL_ID_SHAPE = re.compile(r"[0-9a-f]{32}")


class AliasService:
    """Every change runs in one write transaction: the model check, the compare-and-set and
    the history row commit together."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.repo = AliasRepository()
        self.models = ModelRepository()

    def set(
        self,
        name: str,
        model_id: str,
        actor: str,
        *,
        reason: str = "",
        expected_version: int | None = None,
    ) -> tuple[Alias, list[AliasChange]]:
        """Point `name` at `model_id`; the alias as it now is, with its recent history."""
        if MODEL_ID_SHAPE.fullmatch(name):
            raise InvalidParams(
                f"name: {name!r} is spelled like a model id, which would always win over it",
                [{"loc": ["path", "name"], "type": "value_error",
                  "msg": "an alias name may not be 32 lowercase hex characters (a model id)"}],
            )
        with self.db.transaction() as session:
            if self.models.get(session, model_id) is None:
                raise NotFound(f"model_id: embedding model {model_id!r} not found")
            self.repo.point(
                session, name, model_id, action=AliasAction.set, actor=actor, reason=reason,
                expected_version=expected_version,
            )
            return self._read(session, name)

    def rollback(
        self, name: str, actor: str, *, reason: str = "", expected_version: int | None = None
    ) -> tuple[Alias, list[AliasChange]]:
        """Undo the live change (see `AliasRepository.rollback_target`); 409 when none."""
        with self.db.transaction() as session:
            self.repo.rollback(
                session, name, actor=actor, reason=reason, expected_version=expected_version
            )
            return self._read(session, name)

    def get(self, name: str) -> tuple[Alias, list[AliasChange]]:
        with self.db.read() as session:
            return self._read(session, name)

    def page(self, *, offset: int, limit: int) -> tuple[list[Alias], int]:
        with self.db.read() as session:
            return self.repo.page(session, offset=offset, limit=limit)

    def history(self, name: str, limit: int = HISTORY_SHOWN) -> list[AliasChange]:
        """The newest `limit` changes, newest first."""
        with self.db.read() as session:
            if self.repo.get(session, name) is None:
                raise NotFound(f"alias {name!r} not found")
            return self.repo.history(session, name, limit)

    def resolve(self, model_id_or_alias: str) -> str:
        """The id of the model meant: a model with this id, else the model the alias of this
        name points at now. Model ids win, so an alias can never hide a model."""
        with self.db.read() as session:
            if self.models.get(session, model_id_or_alias) is not None:
                return model_id_or_alias
            alias = self.repo.get(session, model_id_or_alias)
        if alias is None:
            raise NotFound(f"no embedding model or alias named {model_id_or_alias!r}")
        return alias.model_id

    def _read(self, session: Session, name: str) -> tuple[Alias, list[AliasChange]]:
        alias = self.repo.get(session, name)
        if alias is None:
            raise NotFound(f"alias {name!r} not found")
        return alias, self.repo.history(session, name, HISTORY_SHOWN, up_to=alias.version)
