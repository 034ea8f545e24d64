"""`/api/v1/aliases`: stable names for model iterations (e.g. `production`), with history, and
the vector sink each may serve from."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import AliasesDep
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.domain.aliases import Alias
from embtune.domain.evaluation_sets import NAME_MAX_LENGTH, NAME_PATTERN
from embtune.schemas.aliases import (
    AliasChangePublic,
    AliasPublic,
    AliasRollback,
    AliasServing,
    AliasSet,
    AliasSinkSet,
    AliasSummary,
)
from embtune.services.aliases import KEEP, AliasRead, Serving

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


def _summary(alias: Alias, serving: Serving) -> AliasSummary:
    return AliasSummary(
        name=alias.name,
        model_id=alias.model_id,
        version=alias.version,
        updated_at=alias.updated_at,
        updated_by=alias.updated_by,
        sink=alias.sink,
        serving=AliasServing(
            state=serving.state.value,
            model_id=serving.model_id,
            collection=serving.collection,
            reindex_task_id=serving.reindex_task_id,
            detail=serving.detail,
        ),
    )


def _public(found: AliasRead) -> AliasPublic:
    return AliasPublic(
        **_summary(found.alias, found.serving).model_dump(),
        history=[AliasChangePublic.model_validate(c) for c in found.history],
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
    return [_summary(alias, serving) for alias, serving in page]


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
                   "the request",
                   422: "A bad field, e.g. of the sink (`body.sink.<field>`)"},
    ),
)
async def set_alias(
    name: AliasName, body: AliasSet, aliases: AliasesDep, request: Request
) -> AliasPublic:
    """Point the alias at a model, creating it if need be; `sink` (when given) names the
    vector sink it serves from, `null` none. When the alias has a sink and moved, or got a new
    sink, a reindex task writes the model into it (`serving` says when it is live). Pointing
    it at the model it already points at, with the same sink, changes nothing (a retried PUT
    is harmless)."""
    actor = actor_of(request)
    sink = body.sink if "sink" in body.model_fields_set else KEEP
    found = await run_in_threadpool(
        lambda: aliases.set(name, body.model_id, actor, reason=body.reason,
                            expected_version=body.expected_version, sink=sink)
    )
    return _public(found)


@router.put(
    "/{name}/sink",
    response_model=AliasPublic,
    responses=error_responses(
        400, 404, 409, 413, 422,
        described={**UNKNOWN_ALIAS, 400: UNDECODABLE,
                   409: "The alias kept changing under the request",
                   422: "A bad sink field (`body.sink.<field>`)"},
    ),
)
async def set_alias_sink(
    name: AliasName, body: AliasSinkSet, aliases: AliasesDep, request: Request
) -> AliasPublic:
    """Name the vector sink the alias serves from (`null`: none) without moving the alias. A
    new sink gets a reindex task for the model the alias points at; the same sink again
    changes nothing. Not a change in the alias's history, and its version stays."""
    actor = actor_of(request)
    found = await run_in_threadpool(lambda: aliases.set_sink(name, body.sink, actor))
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
    further back, skipping what earlier rollbacks undid (an undo stack). An alias with a sink
    gets an incremental reindex of that model (copying its vectors kept in the sink)."""
    actor = actor_of(request)
    body = body or AliasRollback()
    found = await run_in_threadpool(
        lambda: aliases.rollback(name, actor, reason=body.reason,
                                 expected_version=body.expected_version)
    )
    return _public(found)
