"""`/api/v1/aliases`: stable names for model iterations (e.g. `production`), with history."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import AliasesDep
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.domain.aliases import Alias, AliasChange
from embtune.domain.evaluation_sets import NAME_MAX_LENGTH, NAME_PATTERN
from embtune.schemas.aliases import (
    AliasChangePublic,
    AliasPublic,
    AliasRollback,
    AliasSet,
    AliasSummary,
)

router = APIRouter(prefix="/api/v1/aliases", tags=["aliases"],
                   responses=error_responses(401, 503))

AliasName = Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
UNKNOWN_ALIAS = {404: "Unknown alias"}


def actor_of(request: Request) -> str:
    """Who made a change. embtune has one shared API token, not user accounts, so the most it
    knows is how the caller signed in: the token itself (`user:token`: the CLI, the client,
    scripts) or the dashboard's session cookie (`user:dashboard`); `api` when no token is set
    and anyone may call. The security middleware has already refused anything else."""
    token = request.app.state.runtime.settings.api_token
    if token is None:
        return "api"
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secrets.compare_digest(
        offered.strip().encode(), token.get_secret_value().encode()
    ):
        return "user:token"
    return "user:dashboard"


def _public(found: tuple[Alias, list[AliasChange]]) -> AliasPublic:
    alias, history = found
    return AliasPublic(
        **AliasSummary.model_validate(alias).model_dump(),
        history=[AliasChangePublic.model_validate(c) for c in history],
    )


@router.get("", response_model=list[AliasSummary], responses=error_responses(422))
async def list_aliases(
    aliases: AliasesDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[AliasSummary]:
    """By name; `X-Total-Count` carries how many there are."""
    page, total = await run_in_threadpool(lambda: aliases.page(offset=offset, limit=limit))
    response.headers["X-Total-Count"] = str(total)
    return [AliasSummary.model_validate(a) for a in page]


@router.get(
    "/{name}", response_model=AliasPublic,
    responses=error_responses(404, 422, described=UNKNOWN_ALIAS),
)
async def get_alias(name: AliasName, aliases: AliasesDep) -> AliasPublic:
    return _public(await run_in_threadpool(aliases.get, name))


@router.put(
    "/{name}",
    response_model=AliasPublic,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={400: UNDECODABLE, 404: "Unknown embedding model (`model_id`)",
                   409: "The alias is not at `expected_version`, or kept changing under "
                   "the request"},
    ),
)
async def set_alias(
    name: AliasName, body: AliasSet, aliases: AliasesDep, request: Request
) -> AliasPublic:
    """Point the alias at a model, creating it if need be. Pointing it at the model it already
    points at changes nothing (a retried PUT is harmless)."""
    actor = actor_of(request)
    found = await run_in_threadpool(
        lambda: aliases.set(name, body.model_id, actor, reason=body.reason,
                            expected_version=body.expected_version)
    )
    return _public(found)


@router.post(
    "/{name}/rollback",
    response_model=AliasPublic,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={**UNKNOWN_ALIAS, 400: UNDECODABLE,
                   409: "Nothing to roll back to, or the alias changed meanwhile"},
    ),
)
async def rollback_alias(
    name: AliasName, aliases: AliasesDep, request: Request, body: AliasRollback | None = None
) -> AliasPublic:
    """Undo the alias's live change: back to the model before it. Repeated rollbacks walk
    further back, skipping what earlier rollbacks undid (an undo stack)."""
    actor = actor_of(request)
    body = body or AliasRollback()
    found = await run_in_threadpool(
        lambda: aliases.rollback(name, actor, reason=body.reason,
                                 expected_version=body.expected_version)
    )
    return _public(found)
