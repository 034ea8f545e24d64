"""`/api/v1/embedding-models` and `/api/v1/plugins`: the model registry.

`download` and `embed` take an alias (e.g. `production`) wherever they take a model id: a search
engine re-indexes through the alias and follows it when it moves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from embtune.api.deps import AliasesDep, ModelsDep, WeightsDep
from embtune.api.params import PathId
from embtune.api.responses import UNDECODABLE, error_responses
from embtune.schemas.models import (
    EmbedRequest,
    EmbedResponse,
    ModelCreate,
    ModelPublic,
    PluginPublic,
)

router = APIRouter(prefix="/api/v1", tags=["models"], responses=error_responses(401, 503))

UNKNOWN_MODEL = {404: "Unknown embedding model"}
UNKNOWN_MODEL_OR_ALIAS = {404: "No embedding model or alias of this name"}


@router.post(
    "/embedding-models",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        400, 413, 422,
        described={400: "Plugin not installed; or source unknown, outside the model roots, "
                   "not a model directory, or one of embtune's own directories (the data dir, "
                   f"the database's, models/, staging, caches); or: {UNDECODABLE}"},
    ),
)
async def register_model(body: ModelCreate, models: ModelsDep) -> ModelPublic:
    model = await run_in_threadpool(lambda: models.register(**body.model_dump()))
    return ModelPublic.model_validate(model)


@router.get(
    "/embedding-models", response_model=list[ModelPublic], responses=error_responses(422)
)
async def list_models(
    models: ModelsDep,
    response: Response,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ModelPublic]:
    page, total = await run_in_threadpool(lambda: models.page(offset=offset, limit=limit))
    response.headers["X-Total-Count"] = str(total)
    return [ModelPublic.model_validate(m) for m in page]


@router.get(
    "/embedding-models/{model_id}",
    response_model=ModelPublic,
    responses=error_responses(404, 422, described=UNKNOWN_MODEL),
)
async def get_model(model_id: PathId, models: ModelsDep) -> ModelPublic:
    return ModelPublic.model_validate(await run_in_threadpool(models.get, model_id))


@router.get(
    "/embedding-models/{model_id}/lineage",
    response_model=list[ModelPublic],
    responses=error_responses(404, 422, described=UNKNOWN_MODEL),
)
async def model_lineage(model_id: PathId, models: ModelsDep) -> list[ModelPublic]:
    """The model, its parent, and so on back to the base model."""
    lineage = await run_in_threadpool(models.lineage, model_id)
    return [ModelPublic.model_validate(m) for m in lineage]


@router.get(
    "/embedding-models/{model_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/gzip": {}}},
        **error_responses(
            400, 404, 422,
            described={**UNKNOWN_MODEL_OR_ALIAS, 400: "The model's weights are not available, "
                       "or its source is not a model directory or is one of embtune's own"},
        ),
    },
)
async def download_model(
    model_id: PathId, weights: WeightsDep, aliases: AliasesDep
) -> FileResponse:
    """The model's weights as a tar.gz (loadable with `SentenceTransformer(dir)`); `model_id`
    may be an alias, and the file is named after the model it points at."""
    model_id = await run_in_threadpool(aliases.resolve, model_id)
    path = await run_in_threadpool(weights.archive, model_id)
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"embtune-model-{model_id}.tar.gz",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.post(
    "/embedding-models/{model_id}/embed",
    response_model=EmbedResponse,
    responses=error_responses(
        400, 404, 413, 422,
        described={**UNKNOWN_MODEL_OR_ALIAS,
                   400: f"The model cannot be loaded; or: {UNDECODABLE}"},
    ),
)
async def embed_texts(
    model_id: PathId, body: EmbedRequest, weights: WeightsDep, aliases: AliasesDep
) -> EmbedResponse:
    """Embed texts with this model (normalized vectors), e.g. to re-index with a new iteration.
    `model_id` may be an alias; the answer's `model_id` is the model that embedded."""
    model_id = await run_in_threadpool(aliases.resolve, model_id)
    vectors = await run_in_threadpool(weights.embed, model_id, body.texts)
    return EmbedResponse(model_id=model_id, dimension=len(vectors[0]), vectors=vectors)


@router.get("/plugins", response_model=list[PluginPublic])
async def list_plugins(models: ModelsDep) -> list[PluginPublic]:
    return [PluginPublic(**p) for p in models.describe_plugins()]
